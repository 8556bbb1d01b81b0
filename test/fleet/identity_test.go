package fleet_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// lbGate is a second readiness gate, owned by a simulated load balancer
// controller that sets it once the pod's containers run.
const lbGate corev1.PodConditionType = "lb.example/TargetHealthy"

// identity is what the kubelet changes only when it creates a container:
// its containerID and restartCount. Image is kept for messages.
type identity struct {
	ID       string
	Restarts int32
	Image    string
}

func (i identity) String() string {
	_, id, _ := strings.Cut(i.ID, "://")
	return fmt.Sprintf("%s restarts=%d (%s)", id[:min(len(id), 12)], i.Restarts, i.Image)
}

// identities records, per pod UID and container name, each identity the
// pod's statuses showed, in the order the apiserver served them, a new
// entry whenever containerID or restartCount differs from the last.
type identities struct {
	mu    sync.Mutex
	names map[types.UID]string
	seen  map[types.UID]map[string][]identity
}

func (l *identities) record(p *corev1.Pod) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.names, l.seen = map[types.UID]string{}, map[types.UID]map[string][]identity{}
	}
	byName := l.seen[p.UID]
	if byName == nil {
		byName = map[string][]identity{}
		l.seen[p.UID], l.names[p.UID] = byName, p.Name
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range list {
			if s.ContainerID == "" {
				continue // not created yet, or an image that cannot be pulled
			}
			h := byName[s.Name]
			if n := len(h); n > 0 && h[n-1].ID == s.ContainerID && h[n-1].Restarts == s.RestartCount {
				continue
			}
			byName[s.Name] = append(h, identity{ID: s.ContainerID, Restarts: s.RestartCount, Image: s.Image})
		}
	}
}

// watchPods calls fn with every version of every pod in ns that the
// apiserver serves from now until ctx ends, in order. A watch that cannot
// resume where it stopped would skip versions, so it fails t instead.
// It returns a function that waits for the watch to end.
func watchPods(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, fn func(*corev1.Pod)) (wait func()) {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		fn(&list.Items[i])
	}
	rv := list.ResourceVersion
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("watching pods from %s: %v", rv, err)
				}
				return
			}
			for ev := range w.ResultChan() {
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					p := ev.Object.(*corev1.Pod)
					rv = p.ResourceVersion
					fn(p)
				case watch.Bookmark:
					if p, ok := ev.Object.(*corev1.Pod); ok {
						rv = p.ResourceVersion
					}
				case watch.Error:
					if ctx.Err() == nil {
						t.Errorf("pod watch from %s ended: %v", rv, apierrors.FromObject(ev.Object))
					}
					w.Stop()
					return
				}
			}
		}
	}()
	return func() { <-done }
}

// TestContainersKeepTheirIdentity: the simulated kubelet changes a
// container's containerID and restartCount only when it creates that
// container (first start, image change), never because other writers
// wrote the pod while it was playing a stage. Two gate owners write
// status conditions as soon as they see a pod or its containers run (as
// Rollbook and a load balancer controller do), so kwok's stages often play
// from snapshots that are already stale when their patch lands; then every
// pod is updated in place. Every version of every pod is checked, through
// a watch, not just the end state: a container renamed and renamed back
// is as wrong as one renamed once.
func TestContainersKeepTheirIdentity(t *testing.T) {
	cs, ns := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var ids identities
	var mu sync.Mutex
	asked := map[string]bool{} // "<uid>/<gate>": written once per pod
	writes := make(chan func() error, 4*replicas)
	var writers sync.WaitGroup
	for range 16 {
		writers.Go(func() {
			for w := range writes {
				if err := w(); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
					t.Errorf("gate owner: %v", err)
				}
			}
		})
	}
	ask := func(p *corev1.Pod, g corev1.PodConditionType) {
		mu.Lock()
		defer mu.Unlock()
		if k := string(p.UID) + "/" + string(g); !asked[k] {
			asked[k] = true
			name := p.Name
			writes <- func() error { return setCondition(ctx, cs, ns, name, g, corev1.ConditionTrue) }
		}
	}
	wait := watchPods(t, ctx, cs, ns, func(p *corev1.Pod) {
		ids.record(p)
		if p.DeletionTimestamp != nil || p.Spec.NodeName == "" {
			return
		}
		if condition(p, gate) == nil {
			ask(p, gate)
		}
		running := len(p.Status.ContainerStatuses) == len(p.Spec.Containers)
		for _, s := range p.Status.ContainerStatuses {
			running = running && s.State.Running != nil
		}
		if running && condition(p, lbGate) == nil {
			ask(p, lbGate)
		}
	})

	sts := statefulSet("ids", replicas)
	sts.Spec.Template.Spec.ReadinessGates = append(sts.Spec.Template.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: lbGate})
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReadyReplicas(t, cs, ns, "ids", replicas)

	// In place, as Rollbook does it: gate False, patch the image; gate True
	// once the app container runs v2.
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=ids"})
	if err != nil {
		t.Fatal(err)
	}
	err = parallel(list.Items, 16, func(p corev1.Pod) error {
		if err := setGate(ctx, cs, ns, p.Name, corev1.ConditionFalse); err != nil {
			return err
		}
		return patchImage(ctx, cs, ns, p.Name, 0, "app:v1", "app:v2")
	})
	if err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 2*time.Minute, "every app container running app:v2", func() error {
		list, err = cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=ids"})
		if err != nil {
			return err
		}
		n := 0
		for i := range list.Items {
			if s := containerStatus(&list.Items[i], "app"); s.ImageID == fleet.ImageID("app:v2") && s.Ready {
				n++
			}
		}
		if n < replicas {
			return fmt.Errorf("%d of %d", n, replicas)
		}
		return nil
	})
	err = parallel(list.Items, 16, func(p corev1.Pod) error { return setGate(ctx, cs, ns, p.Name, corev1.ConditionTrue) })
	if err != nil {
		t.Fatal(err)
	}
	waitReadyReplicas(t, cs, ns, "ids", replicas)
	final, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=ids"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range final.Items {
		ids.record(&final.Items[i]) // the apiserver's word at the end, whatever the watch delivered
	}
	cancel()
	close(writes)
	writers.Wait()
	wait()

	// Each pod: the log sidecar had one identity all along; app had two,
	// v1 from the start and v2 after exactly one restart.
	var bad []string
	for uid, byName := range ids.seen {
		logs, apps := byName["log"], byName["app"]
		var why []string
		if len(logs) != 1 {
			why = append(why, fmt.Sprintf("log sidecar had %d identities %v", len(logs), logs))
		}
		if len(apps) != 2 || apps[0].Restarts != 0 || apps[1].Restarts != 1 || apps[1].Image != "app:v2" {
			why = append(why, fmt.Sprintf("app had identities %v, want one on app:v1 then one restart onto app:v2", apps))
		}
		if why != nil {
			bad = append(bad, ids.names[uid]+": "+strings.Join(why, "; "))
		}
	}
	sort.Strings(bad)
	if len(ids.seen) != replicas {
		t.Errorf("saw %d pods, want %d", len(ids.seen), replicas)
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d pods had a container renamed or restarted by the simulated kubelet without cause, e.g.:\n%s",
			len(bad), len(ids.seen), strings.Join(bad[:min(len(bad), 5)], "\n"))
	}
}

// setCondition writes one condition of the pod's status (merged by type).
func setCondition(ctx context.Context, cs kubernetes.Interface, ns, name string, typ corev1.PodConditionType, status corev1.ConditionStatus) error {
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":%q,"lastTransitionTime":%q}]}}`,
		typ, status, time.Now().UTC().Format(time.RFC3339))
	_, err := cs.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}
