package fleet_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

const replicas = 300

func statefulSet(name string, n int32) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &n,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			ServiceName:         name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate}},
					// Hard zone spread, so "every zone holds a third" is
					// something the scheduler must have done from the
					// nodes' labels.
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew:           1,
						TopologyKey:       fleet.ZoneLabel,
						WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector:     &metav1.LabelSelector{MatchLabels: labels},
					}},
					TerminationGracePeriodSeconds: new(int64(30)),
					Containers: []corev1.Container{
						{
							Name:  "app",
							Image: "app:v1",
							Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("100m"),
								corev1.ResourceMemory: resource.MustParse("64Mi"),
							}},
						},
						{Name: "log", Image: "registry.example/log-shipper:1.0"},
					},
				},
			},
		},
	}
}

// TestStatefulSetFleet runs what Rollbook's end-to-end tests stand on: a
// 300-replica OnDelete StatefulSet with Rollbook's readiness gate across 30
// simulated nodes in 3 zones, and checks the simulated kubelets behave like
// real ones towards it.
func TestStatefulSetFleet(t *testing.T) {
	cs, ns := setup(t)
	ctx := context.Background()
	start := time.Now()
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, statefulSet("web", replicas), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Every pod runs with its containers ready, but a gate without its
	// condition keeps every one NotReady.
	var pods []corev1.Pod
	cluster.Eventually(t, 2*time.Minute, "all pods running, containers ready", func() error {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		running := 0
		for i := range list.Items {
			p := &list.Items[i]
			if p.Status.Phase == corev1.PodRunning && condition(p, corev1.ContainersReady) != nil &&
				condition(p, corev1.ContainersReady).Status == corev1.ConditionTrue {
				running++
			}
		}
		if running < replicas {
			return fmt.Errorf("%d of %d pods running with containers ready", running, replicas)
		}
		pods = list.Items
		return nil
	})
	t.Logf("%d pods running (containers ready) %s after the StatefulSet was created", replicas, time.Since(start).Round(time.Millisecond))
	zones := map[string]int{}
	nodeZone := map[string]string{}
	for i := range pods {
		p := &pods[i]
		if isReady(p) {
			t.Fatalf("pod %s is Ready before its readiness gate is set: %s", p.Name, describe(p))
		}
		c := condition(p, corev1.PodReady)
		if c == nil || c.Reason != "ReadinessGatesNotReady" {
			t.Fatalf("pod %s: Ready condition %+v, want False with reason ReadinessGatesNotReady", p.Name, c)
		}
		if _, ok := nodeZone[p.Spec.NodeName]; !ok {
			nd, err := cs.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			nodeZone[p.Spec.NodeName] = nd.Labels[fleet.ZoneLabel]
		}
		zones[nodeZone[p.Spec.NodeName]]++
	}
	for _, z := range fleet.Zones {
		if zones[z] != replicas/len(fleet.Zones) {
			t.Errorf("zone %s holds %d pods, want %d (spread %v over %d nodes)", z, zones[z], replicas/len(fleet.Zones), zones, len(nodeZone))
		}
	}
	if ss, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if ss.Status.ReadyReplicas != 0 {
		t.Fatalf("StatefulSet reports %d ready replicas before any gate is set", ss.Status.ReadyReplicas)
	}

	// Setting the gate condition True makes every pod Ready.
	gated := time.Now()
	names := make([]string, len(pods))
	for i := range pods {
		names[i] = pods[i].Name
	}
	if err := parallel(names, 16, func(n string) error { return setGate(ctx, cs, ns, n, corev1.ConditionTrue) }); err != nil {
		t.Fatal(err)
	}
	wrote := time.Since(gated)
	waitReadyReplicas(t, cs, ns, "web", replicas)
	t.Logf("%d gates set in %s; all pods Ready %s after the first write (%s after the StatefulSet was created)",
		replicas, wrote.Round(time.Millisecond), time.Since(gated).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	t.Run("ImageChangeRestartsOneContainer", func(t *testing.T) {
		testImageChange(t, cs, ns, "web-1")
	})
	t.Run("GateFlip", func(t *testing.T) {
		name := "web-2"
		if err := setGate(ctx, cs, ns, name, corev1.ConditionFalse); err != nil {
			t.Fatal(err)
		}
		waitPod(t, cs, ns, name, 10*time.Second, "NotReady with the gate False", func(p *corev1.Pod) error {
			c := condition(p, corev1.PodReady)
			if c == nil || c.Status != corev1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" {
				return fmt.Errorf("Ready condition %+v", c)
			}
			return nil
		})
		if err := setGate(ctx, cs, ns, name, corev1.ConditionTrue); err != nil {
			t.Fatal(err)
		}
		waitPod(t, cs, ns, name, 10*time.Second, "Ready with the gate True", func(p *corev1.Pod) error {
			if !isReady(p) {
				return fmt.Errorf("not Ready: %+v", condition(p, corev1.PodReady))
			}
			return nil
		})
	})
	t.Run("Resize", func(t *testing.T) {
		name := "web-3"
		patch := []byte(`{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"250m","memory":"64Mi"}}}]}}`)
		if _, err := cs.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "resize"); err != nil {
			t.Fatal(err)
		}
		resized := time.Now()
		waitPod(t, cs, ns, name, 10*time.Second, "status resources to follow the resize", func(p *corev1.Pod) error {
			s := containerStatus(p, "app")
			if s.Resources == nil {
				return fmt.Errorf("no status resources: %+v", s)
			}
			if got := s.Resources.Requests.Cpu().String(); got != "250m" {
				return fmt.Errorf("status resources cpu %s", got)
			}
			if got := s.AllocatedResources.Cpu().String(); got != "250m" {
				return fmt.Errorf("allocatedResources cpu %s", got)
			}
			if p.Status.ObservedGeneration != p.Generation {
				return fmt.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
			}
			if s.RestartCount != 0 || !s.Ready {
				return fmt.Errorf("a resize must not restart the container: %+v", s)
			}
			return nil
		})
		t.Logf("resize visible in status after %s", time.Since(resized).Round(time.Millisecond))
	})
	t.Run("DeleteRecreates", func(t *testing.T) {
		name := "web-4"
		old, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		// A default graceful delete: the simulated kubelet finishes it.
		if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPod(t, cs, ns, name, 30*time.Second, "a replacement running", func(p *corev1.Pod) error {
			if p.UID == old.UID {
				return fmt.Errorf("still the old pod (deletionTimestamp %v)", p.DeletionTimestamp)
			}
			if p.Status.Phase != corev1.PodRunning || containerStatus(p, "app").State.Running == nil {
				return fmt.Errorf("replacement phase %s", p.Status.Phase)
			}
			if isReady(p) {
				return fmt.Errorf("replacement Ready before its gate is set")
			}
			return nil
		})
		t.Logf("replacement running %s after the delete", time.Since(deleted).Round(time.Millisecond))
		if err := setGate(ctx, cs, ns, name, corev1.ConditionTrue); err != nil {
			t.Fatal(err)
		}
		waitReadyReplicas(t, cs, ns, "web", replicas)
	})
	t.Run("InPlaceRollAll", func(t *testing.T) {
		// What Rollbook does to each pod, for all of them at once: gate
		// False, patch the image, and once the container was rebuilt, gate
		// True. Many writes racing the simulated kubelet must still give
		// exactly one restart per pod.
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		rolled := time.Now()
		err = parallel(list.Items, 16, func(p corev1.Pod) error {
			if p.Spec.Containers[0].Image == "app:v2" { // ImageChangeRestartsOneContainer did this one
				return nil
			}
			if err := setGate(ctx, cs, ns, p.Name, corev1.ConditionFalse); err != nil {
				return err
			}
			return patchImage(ctx, cs, ns, p.Name, 0, "app:v1", "app:v2")
		})
		if err != nil {
			t.Fatal(err)
		}
		var rebuilt []string
		cluster.Eventually(t, time.Minute, "every app container rebuilt on app:v2", func() error {
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return err
			}
			rebuilt = rebuilt[:0]
			for i := range list.Items {
				p := &list.Items[i]
				s := containerStatus(p, "app")
				if s.ImageID == fleet.ImageID("app:v2") && s.State.Running != nil && s.Ready {
					rebuilt = append(rebuilt, p.Name)
				}
			}
			if len(rebuilt) < replicas {
				return fmt.Errorf("%d of %d rebuilt", len(rebuilt), replicas)
			}
			return nil
		})
		t.Logf("%d containers rebuilt %s after the first gate write", replicas, time.Since(rolled).Round(time.Millisecond))
		if err := parallel(rebuilt, 16, func(n string) error { return setGate(ctx, cs, ns, n, corev1.ConditionTrue) }); err != nil {
			t.Fatal(err)
		}
		waitReadyReplicas(t, cs, ns, "web", replicas)
		t.Logf("all Ready again %s after the first gate write", time.Since(rolled).Round(time.Millisecond))
		list, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			p := &list.Items[i]
			if s := containerStatus(p, "app"); s.RestartCount != 1 {
				t.Errorf("%s: app restartCount %d, want 1", p.Name, s.RestartCount)
			}
			if s := containerStatus(p, "log"); s.RestartCount != 0 {
				t.Errorf("%s: log restartCount %d, want 0", p.Name, s.RestartCount)
			}
		}
	})
}

// testImageChange patches the first container's image on a Ready pod and
// checks that container alone restarted with the new image.
func testImageChange(t *testing.T, cs kubernetes.Interface, ns, name string) {
	ctx := context.Background()
	before, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app, logc := *containerStatus(before, "app"), *containerStatus(before, "log")
	if app.ImageID != fleet.ImageID("app:v1") || app.RestartCount != 0 || app.ContainerID == "" {
		t.Fatalf("before the patch: app status %+v, want imageID %s", app, fleet.ImageID("app:v1"))
	}
	patched := time.Now()
	if err := patchImage(ctx, cs, ns, name, 0, "app:v1", "app:v2"); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, cs, ns, name, 10*time.Second, "app restarted on app:v2 and ready", func(p *corev1.Pod) error {
		s := containerStatus(p, "app")
		if s.Image != "app:v2" || s.State.Running == nil || !s.Ready || !isReady(p) {
			return fmt.Errorf("app %+v, pod Ready %v", s, isReady(p))
		}
		return nil
	})
	t.Logf("image change converged %s after the patch (delay %s)", time.Since(patched).Round(time.Millisecond), 200*time.Millisecond)
	s := containerStatus(p, "app")
	if s.ImageID != fleet.ImageID("app:v2") || s.ImageID == app.ImageID {
		t.Errorf("imageID %s, want %s (was %s)", s.ImageID, fleet.ImageID("app:v2"), app.ImageID)
	}
	if s.ContainerID == app.ContainerID || s.ContainerID == "" {
		t.Errorf("containerID %q unchanged or empty", s.ContainerID)
	}
	if s.RestartCount != 1 {
		t.Errorf("restartCount %d, want 1", s.RestartCount)
	}
	if s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ContainerID != app.ContainerID {
		t.Errorf("lastState %+v, want the old container terminated", s.LastTerminationState)
	}
	if l := containerStatus(p, "log"); l.ContainerID != logc.ContainerID || l.RestartCount != 0 || l.ImageID != logc.ImageID {
		t.Errorf("the other container changed: %+v, was %+v", l, logc)
	}
	if p.Status.ObservedGeneration != p.Generation {
		t.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
	}
}

// waitPod polls one pod until check passes and returns it.
func waitPod(t *testing.T, cs kubernetes.Interface, ns, name string, timeout time.Duration, what string, check func(*corev1.Pod) error) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	cluster.Eventually(t, timeout, name+": "+what, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := check(p); err != nil {
			return fmt.Errorf("%w\n%s", err, describe(p))
		}
		got = p
		return nil
	})
	return got
}

func waitReadyReplicas(t *testing.T, cs kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	cluster.Eventually(t, time.Minute, "StatefulSet "+name+" fully ready", func() error {
		ss, err := cs.AppsV1().StatefulSets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ss.Status.ReadyReplicas != n || ss.Status.ObservedGeneration != ss.Generation {
			return fmt.Errorf("%d of %d replicas ready", ss.Status.ReadyReplicas, n)
		}
		return nil
	})
}
