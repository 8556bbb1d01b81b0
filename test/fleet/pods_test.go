package fleet_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// createPod creates a bare two-container pod (app, log) and, unless
// waitRunning is false, waits until both containers run and it is Ready.
func createPod(t *testing.T, cs kubernetes.Interface, ns, name, appImage string, waitRunning bool) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: appImage},
			{Name: "log", Image: "log:1"},
		}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !waitRunning {
		return nil
	}
	return waitPod(t, cs, ns, name, 30*time.Second, "Ready", func(p *corev1.Pod) error {
		if !isReady(p) {
			return fmt.Errorf("not Ready")
		}
		return nil
	})
}

// TestFailureInjection checks each image-name failure mode, both for an
// in-place image change on a running pod and for a new pod.
func TestFailureInjection(t *testing.T) {
	cs, ns := setup(t)
	ctx := context.Background()

	// notReadyWithReason waits until app is waiting with one of reasons and
	// the pod is NotReady, while log kept its container.
	notReadyWithReason := func(t *testing.T, name string, logID string, reasons ...string) *corev1.Pod {
		return waitPod(t, cs, ns, name, 10*time.Second, "app waiting "+strings.Join(reasons, "/"), func(p *corev1.Pod) error {
			s := containerStatus(p, "app")
			if s.State.Waiting == nil || !slices.Contains(reasons, s.State.Waiting.Reason) {
				return fmt.Errorf("app state %+v", s.State)
			}
			if s.Ready || isReady(p) {
				return fmt.Errorf("app ready %v, pod Ready %v", s.Ready, isReady(p))
			}
			if logID != "" && containerStatus(p, "log").ContainerID != logID {
				return fmt.Errorf("log container changed")
			}
			return nil
		})
	}

	t.Run("PullFail", func(t *testing.T) {
		t.Parallel()
		before := createPod(t, cs, ns, "pullfail", "app:v1", true)
		if err := patchImage(ctx, cs, ns, "pullfail", 0, "app:v1", "app:v2-pullfail"); err != nil {
			t.Fatal(err)
		}
		notReadyWithReason(t, "pullfail", containerStatus(before, "log").ContainerID, "ErrImagePull", "ImagePullBackOff")
		p := notReadyWithReason(t, "pullfail", containerStatus(before, "log").ContainerID, "ImagePullBackOff")
		s := containerStatus(p, "app")
		if s.ImageID != "" || s.ContainerID != "" || s.RestartCount != 0 {
			t.Errorf("a failed pull created a container: %+v", s)
		}
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("phase %s, want Running (the pod ran before)", p.Status.Phase)
		}
		// Fixing the image brings the container back.
		if err := patchImage(ctx, cs, ns, "pullfail", 0, "app:v2-pullfail", "app:v3"); err != nil {
			t.Fatal(err)
		}
		waitPod(t, cs, ns, "pullfail", 10*time.Second, "app running app:v3", func(p *corev1.Pod) error {
			s := containerStatus(p, "app")
			if s.Image != "app:v3" || !s.Ready || !isReady(p) || s.ImageID != fleet.ImageID("app:v3") || s.RestartCount != 1 {
				return fmt.Errorf("app %+v", s)
			}
			return nil
		})
	})
	t.Run("PullFailNewPod", func(t *testing.T) {
		t.Parallel()
		createPod(t, cs, ns, "pullfail-new", "app:v1-pullfail", false)
		p := notReadyWithReason(t, "pullfail-new", "", "ImagePullBackOff")
		if p.Status.Phase != corev1.PodPending {
			t.Errorf("phase %s, want Pending: the container never ran", p.Status.Phase)
		}
		if l := containerStatus(p, "log"); l.State.Running == nil || !l.Ready {
			t.Errorf("log container %+v, want running and ready", l)
		}
	})
	t.Run("CrashLoop", func(t *testing.T) {
		t.Parallel()
		before := createPod(t, cs, ns, "crashloop", "app:v1", true)
		if err := patchImage(ctx, cs, ns, "crashloop", 0, "app:v1", "app:v2-crashloop"); err != nil {
			t.Fatal(err)
		}
		first := containerStatus(notReadyWithReason(t, "crashloop", containerStatus(before, "log").ContainerID, "CrashLoopBackOff"), "app")
		p := waitPod(t, cs, ns, "crashloop", 10*time.Second, "restartCount rising", func(p *corev1.Pod) error {
			s := containerStatus(p, "app")
			if s.RestartCount < first.RestartCount+2 {
				return fmt.Errorf("restartCount %d (first seen %d)", s.RestartCount, first.RestartCount)
			}
			if s.State.Waiting == nil || s.State.Waiting.Reason != "CrashLoopBackOff" || s.Ready || isReady(p) {
				return fmt.Errorf("app %+v", s)
			}
			return nil
		})
		s := containerStatus(p, "app")
		if term := s.LastTerminationState.Terminated; term == nil || term.ExitCode == 0 || term.Reason != "Error" {
			t.Errorf("lastState %+v, want terminated with an error", s.LastTerminationState)
		}
		if s.ImageID != fleet.ImageID("app:v2-crashloop") {
			t.Errorf("imageID %s: the image was pulled", s.ImageID)
		}
	})
	t.Run("SlowStart", func(t *testing.T) {
		t.Parallel()
		before := createPod(t, cs, ns, "slowstart", "app:v1", true)
		if err := patchImage(ctx, cs, ns, "slowstart", 0, "app:v1", "app:v2-slowstart"); err != nil {
			t.Fatal(err)
		}
		p := waitPod(t, cs, ns, "slowstart", 10*time.Second, "app running app:v2-slowstart", func(p *corev1.Pod) error {
			if s := containerStatus(p, "app"); s.Image != "app:v2-slowstart" || s.State.Running == nil {
				return fmt.Errorf("app %+v", s)
			}
			return nil
		})
		runningSeen := time.Now()
		if s := containerStatus(p, "app"); s.Ready || isReady(p) {
			t.Fatalf("slowstart container ready at once: %+v", s)
		}
		p = waitPod(t, cs, ns, "slowstart", 15*time.Second, "Ready", func(p *corev1.Pod) error {
			if !isReady(p) {
				return fmt.Errorf("not Ready")
			}
			return nil
		})
		started := containerStatus(p, "app").State.Running.StartedAt.Time
		t.Logf("ready %s after it was seen running (started %s)", time.Since(runningSeen).Round(time.Millisecond), started)
		// startedAt has whole seconds: the 3 s default is 2 to 3 s.
		if time.Since(started) < 2*time.Second {
			t.Errorf("ready only %s after startedAt", time.Since(started))
		}
		if s := containerStatus(p, "app"); s.RestartCount != 1 || s.ContainerID == containerStatus(before, "app").ContainerID {
			t.Errorf("app %+v: want a new container, restartCount 1", s)
		}
	})
	t.Run("SameDigest", func(t *testing.T) {
		t.Parallel()
		before := createPod(t, cs, ns, "samedigest", "app:v1", true)
		old := containerStatus(before, "app")
		if err := patchImage(ctx, cs, ns, "samedigest", 0, "app:v1", "app:v2-samedigest"); err != nil {
			t.Fatal(err)
		}
		p := waitPod(t, cs, ns, "samedigest", 10*time.Second, "app running app:v2-samedigest", func(p *corev1.Pod) error {
			if s := containerStatus(p, "app"); s.Image != "app:v2-samedigest" || s.State.Running == nil || !s.Ready || !isReady(p) {
				return fmt.Errorf("app %+v", s)
			}
			return nil
		})
		s := containerStatus(p, "app")
		if s.ImageID != old.ImageID {
			t.Errorf("imageID %s, want the retagged digest %s", s.ImageID, old.ImageID)
		}
		if s.ContainerID == old.ContainerID || s.RestartCount != 1 {
			t.Errorf("app %+v: want a new container and restartCount 1", s)
		}
	})
	t.Run("DigestPinned", func(t *testing.T) {
		t.Parallel()
		img := "registry.example/team/app@sha256:" + strings.Repeat("ab", 32)
		p := createPod(t, cs, ns, "pinned", img, true)
		if got, want := containerStatus(p, "app").ImageID, "registry.example/team/app@sha256:"+strings.Repeat("ab", 32); got != want {
			t.Errorf("imageID %s, want %s", got, want)
		}
	})
	t.Run("InitContainers", func(t *testing.T) {
		t.Parallel()
		always := corev1.ContainerRestartPolicyAlways
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "init"},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{
					{Name: "setup", Image: "busybox:1"},
					{Name: "proxy", Image: "envoy:1", RestartPolicy: &always},
				},
				Containers: []corev1.Container{{Name: "app", Image: "app:v1"}},
			},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPod(t, cs, ns, "init", 30*time.Second, "Ready with init containers done", func(p *corev1.Pod) error {
			if !isReady(p) || len(p.Status.InitContainerStatuses) != 2 {
				return fmt.Errorf("not Ready")
			}
			setup, proxy := p.Status.InitContainerStatuses[0], p.Status.InitContainerStatuses[1]
			if setup.State.Terminated == nil || setup.State.Terminated.Reason != "Completed" {
				return fmt.Errorf("init container %+v", setup)
			}
			if proxy.State.Running == nil || !proxy.Ready {
				return fmt.Errorf("sidecar %+v", proxy)
			}
			return nil
		})
	})
}

// TestNodes checks the simulated nodes look like kubelet-registered ones.
func TestNodes(t *testing.T) {
	cs, _ := setup(t)
	ctx := context.Background()
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: fleet.TypeLabel + "=" + fleet.TypeValue})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != nodeCount {
		t.Fatalf("%d nodes, want %d", len(list.Items), nodeCount)
	}
	zones := map[string]int{}
	for _, nd := range list.Items {
		zones[nd.Labels[fleet.ZoneLabel]]++
		if nd.Labels[fleet.HostnameLabel] != nd.Name {
			t.Errorf("node %s: hostname label %q", nd.Name, nd.Labels[fleet.HostnameLabel])
		}
		if got := nd.Status.Allocatable.Pods().Value(); got != 250 {
			t.Errorf("node %s: allocatable pods %d", nd.Name, got)
		}
	}
	for _, z := range fleet.Zones {
		if zones[z] != nodeCount/len(fleet.Zones) {
			t.Errorf("zone %s has %d nodes, want %d", z, zones[z], nodeCount/len(fleet.Zones))
		}
	}
	// Calling CreateNodes again keeps the nodes.
	if _, err := fleet.CreateNodes(ctx, cs, nodeCount, nil); err != nil {
		t.Fatal(err)
	}
	// kwok renews every node's Lease: the node lifecycle controller's view
	// of a live kubelet.
	cluster.Eventually(t, time.Minute, "every node's lease renewed by kwok", func() error {
		leases, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		renewed := 0
		for _, l := range leases.Items {
			if isFresh(l) {
				renewed++
			}
		}
		if renewed < nodeCount {
			return fmt.Errorf("%d of %d leases renewed in the last 40 s", renewed, nodeCount)
		}
		return nil
	})
	if err := theFleet.Healthy(); err != nil {
		t.Fatal(err)
	}
}

func isFresh(l coordinationv1.Lease) bool {
	return l.Spec.RenewTime != nil && time.Since(l.Spec.RenewTime.Time) < 40*time.Second &&
		l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != ""
}
