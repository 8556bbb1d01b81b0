package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// The binary against the real control plane, started as the benches start
// it (fleet.Start with Kind Lean). test/fleet's own suite runs against it
// too with `go test ./test/fleet -fleet=lean`.

func TestMain(m *testing.M) { cluster.Main(m) }

const (
	gate     corev1.PodConditionType = "rollbook.dev/InPlaceUpdateReady"
	nodes                            = 6
	imgDelay                         = 500 * time.Millisecond
)

var (
	once     sync.Once
	theFleet *fleet.Fleet
	startErr error
)

func setup(t *testing.T) (kubernetes.Interface, string) {
	t.Helper()
	c := cluster.Shared(t)
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		theFleet, startErr = fleet.Start(ctx, c, fleet.Options{Kind: fleet.Lean, ImageChangeDelay: imgDelay, Progress: os.Stderr})
		if startErr == nil {
			_, startErr = fleet.CreateNodes(ctx, c.Clientset(), nodes, nil)
		}
	})
	if startErr != nil {
		t.Fatalf("starting the lean fleet: %v", startErr)
	}
	t.Cleanup(func() {
		if err := theFleet.Healthy(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("leankubelet:\n%s", theFleet.LogTail(30))
		}
	})
	return c.Clientset(), c.Namespace(t)
}

func waitPod(t *testing.T, cs kubernetes.Interface, ns, name string, timeout time.Duration, what string, check func(*corev1.Pod) error) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	cluster.Eventually(t, timeout, name+": "+what, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := check(p); err != nil {
			b, _ := json.Marshal(p.Status)
			return fmt.Errorf("%w\nstatus: %s", err, b)
		}
		got = p
		return nil
	})
	return got
}

func cond(p *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func isReady(p *corev1.Pod) bool {
	c := cond(p, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

func status(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{Name: name}
}

func gatedPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:   map[string]string{fleet.TypeLabel: fleet.TypeValue},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate}},
			Containers:     []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}, {Name: "log", Image: "log:1"}},
		},
	}
}

func setGate(ctx context.Context, cs kubernetes.Interface, ns, name string, s corev1.ConditionStatus) error {
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":%q,"lastTransitionTime":%q}]}}`, gate, s, time.Now().UTC().Format(time.RFC3339))
	_, err := cs.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

// startGated creates a gated pod and waits until it runs with its
// containers ready but NotReady for its gate; then it sets the gate and
// waits for Ready.
func startGated(t *testing.T, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, gatedPod(name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, cs, ns, name, 30*time.Second, "running, gated", func(p *corev1.Pod) error {
		if c := cond(p, corev1.ContainersReady); p.Status.Phase != corev1.PodRunning || c == nil || c.Status != corev1.ConditionTrue {
			return fmt.Errorf("phase %s, ContainersReady %+v", p.Status.Phase, c)
		}
		return nil
	})
	if c := cond(p, corev1.PodReady); c == nil || c.Status != corev1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" {
		t.Fatalf("Ready %+v, want False for the unset gate", c)
	}
	if c := cond(p, gate); c != nil {
		t.Fatalf("the simulated kubelet wrote the gate condition: %+v", c)
	}
	if err := setGate(ctx, cs, ns, name, corev1.ConditionTrue); err != nil {
		t.Fatal(err)
	}
	return waitPod(t, cs, ns, name, 10*time.Second, "Ready once gated True", func(p *corev1.Pod) error {
		if !isReady(p) {
			return fmt.Errorf("not Ready")
		}
		return nil
	})
}

func TestPodStarts(t *testing.T) {
	cs, ns := setup(t)
	p := startGated(t, cs, ns, "starts")
	for _, name := range []string{"app", "log"} {
		s := status(p, name)
		if s.State.Running == nil || !s.Ready || s.Started == nil || !*s.Started || !strings.HasPrefix(s.ContainerID, "containerd://") || s.RestartCount != 0 {
			t.Errorf("%s: %+v", name, s)
		}
	}
	if got, want := status(p, "app").ImageID, fleet.ImageID("registry.example/app:v1"); got != want {
		t.Errorf("imageID %s, want %s", got, want)
	}
	if p.Status.PodIP == "" || len(p.Status.PodIPs) != 1 || p.Status.HostIP == "" || p.Status.StartTime == nil {
		t.Errorf("addresses and start time: %+v", p.Status)
	}
	if p.Status.ObservedGeneration != p.Generation {
		t.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
	}
	// Gate back to False: NotReady again, containers untouched.
	if err := setGate(context.Background(), cs, ns, "starts", corev1.ConditionFalse); err != nil {
		t.Fatal(err)
	}
	waitPod(t, cs, ns, "starts", 10*time.Second, "NotReady for its gate", func(q *corev1.Pod) error {
		if c := cond(q, corev1.PodReady); c == nil || c.Status != corev1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" {
			return fmt.Errorf("Ready %+v", c)
		}
		if status(q, "app").ContainerID != status(p, "app").ContainerID {
			return fmt.Errorf("app restarted")
		}
		return nil
	})
}

func TestImageChangeRestartsThatContainer(t *testing.T) {
	cs, ns := setup(t)
	ctx := context.Background()
	before := startGated(t, cs, ns, "restart")
	patch := `[{"op":"test","path":"/spec/containers/0/image","value":"registry.example/app:v1"},{"op":"replace","path":"/spec/containers/0/image","value":"registry.example/app:v2"}]`
	sent := time.Now()
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "restart", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	p := waitPod(t, cs, ns, "restart", 10*time.Second, "app restarted on v2 and Ready", func(p *corev1.Pod) error {
		if s := status(p, "app"); s.Image != "registry.example/app:v2" || !s.Ready || !isReady(p) {
			return fmt.Errorf("app %+v", s)
		}
		return nil
	})
	took := time.Since(sent)
	t.Logf("restarted %s after the patch was sent (delay %s)", took.Round(time.Millisecond), imgDelay)
	if took < imgDelay {
		t.Errorf("restarted %s after the patch, before the %s delay", took, imgDelay)
	}
	app, old := status(p, "app"), status(before, "app")
	if app.RestartCount != 1 || app.ContainerID == old.ContainerID || app.ImageID != fleet.ImageID("registry.example/app:v2") || app.State.Running == nil {
		t.Errorf("app %+v, want a new container on v2 with restartCount 1", app)
	}
	if term := app.LastTerminationState.Terminated; term == nil || term.ContainerID != old.ContainerID {
		t.Errorf("lastState %+v, want the old container %s terminated", app.LastTerminationState, old.ContainerID)
	}
	if l, ol := status(p, "log"), status(before, "log"); l.ContainerID != ol.ContainerID || l.RestartCount != 0 {
		t.Errorf("log container changed: %+v", l)
	}
	if p.Status.ObservedGeneration != p.Generation {
		t.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
	}
}

func TestStatefulSetAndDeletion(t *testing.T) {
	cs, ns := setup(t)
	ctx := context.Background()
	n := int32(5)
	labels := map[string]string{"app": "web"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &n, Selector: &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       gatedPod("").Spec,
			},
		},
	}
	sts.Spec.Template.Spec.ReadinessGates = nil
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	readyReplicas := func(want int32) func() error {
		return func() error {
			s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if s.Status.ReadyReplicas != want {
				return fmt.Errorf("%d of %d Ready", s.Status.ReadyReplicas, want)
			}
			return nil
		}
	}
	cluster.Eventually(t, time.Minute, "every replica Ready", readyReplicas(n))

	// A default graceful delete (30 s): the kubelet finishes it at once,
	// and the StatefulSet controller makes a new pod, which starts.
	old, err := cs.CoreV1().Pods(ns).Get(ctx, "web-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "web-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, cs, ns, "web-2", 20*time.Second, "replaced and Ready", func(p *corev1.Pod) error {
		if p.UID == old.UID {
			return fmt.Errorf("still the old pod (deletionTimestamp %v)", p.DeletionTimestamp)
		}
		if !isReady(p) {
			return fmt.Errorf("replacement not Ready")
		}
		return nil
	})
	t.Logf("replacement Ready %s after the delete", time.Since(deleted).Round(time.Millisecond))
	cluster.Eventually(t, time.Minute, "every replica Ready again", readyReplicas(n))

	// A bare pod is gone well within its grace period.
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, gatedPod("bare"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, cs, ns, "bare", 30*time.Second, "running", func(p *corev1.Pod) error {
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "bare", metav1.DeleteOptions{GracePeriodSeconds: new(int64(30))}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 10*time.Second, "bare pod deleted", func() error {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, "bare", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// TestNodesStayReady checks what the node lifecycle controller reads: every
// node Ready, untainted, its Lease held and renewed.
func TestNodesStayReady(t *testing.T) {
	cs, _ := setup(t)
	ctx := context.Background()
	names := make([]string, nodes)
	for i := range names {
		names[i] = fleet.NodeName(i)
	}
	if err := fleet.WaitNodesReady(ctx, cs, names); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, time.Minute, "every node's Lease renewed in the last 20 s", func() error {
		for _, n := range names {
			l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != n || l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) > 20*time.Second {
				return fmt.Errorf("lease %s: %+v", n, l.Spec)
			}
		}
		return nil
	})
	nd, err := cs.CoreV1().Nodes().Get(ctx, names[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nd.Status.Addresses) == 0 || nd.Status.NodeInfo.KubeletVersion == "" {
		t.Errorf("node status: addresses %v, nodeInfo %+v", nd.Status.Addresses, nd.Status.NodeInfo)
	}
	st, err := theFleet.LeanStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lean kubelet so far: %+v", st)
	if st.Errors != 0 {
		t.Errorf("%d failed writes", st.Errors)
	}
}
