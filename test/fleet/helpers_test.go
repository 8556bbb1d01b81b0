package fleet_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

func TestMain(m *testing.M) { cluster.Main(m) }

// fleetKind chooses the simulated kubelet the suite runs against: kwok by
// default; `go test ./test/fleet -fleet=lean` runs the same checks against
// package lean's.
var fleetKind = flag.String("fleet", fleet.Kwok, "the simulated kubelet to test: kwok or lean")

// gate is the readiness gate Rollbook owns.
const gate corev1.PodConditionType = "rollbook.dev/InPlaceUpdateReady"

// nodeCount nodes over fleet.Zones, shared by every test of the package.
const nodeCount = 30

var (
	fleetOnce sync.Once
	theFleet  *fleet.Fleet
	fleetErr  error
)

// setup returns the package's cluster with kwok running and nodeCount
// Ready nodes (started once), a clientset and a fresh namespace. When the
// test fails, kwok's log tail is printed.
func setup(t *testing.T) (kubernetes.Interface, string) {
	t.Helper()
	c := cluster.Shared(t)
	fleetOnce.Do(func() {
		// Generous: the first run builds kwok (~5 min on two cores).
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		start := time.Now()
		theFleet, fleetErr = fleet.Start(ctx, c, fleet.Options{Kind: *fleetKind, Progress: os.Stderr})
		if fleetErr != nil {
			return
		}
		kwokUp := time.Since(start)
		_, fleetErr = fleet.CreateNodes(ctx, c.Clientset(), nodeCount, nil)
		fmt.Fprintf(os.Stderr, "fleet: %s healthy in %s, %d nodes Ready %s later\n",
			*fleetKind, kwokUp.Round(time.Millisecond), nodeCount, (time.Since(start) - kwokUp).Round(time.Millisecond))
	})
	if fleetErr != nil {
		t.Fatalf("starting the fleet: %v", fleetErr)
	}
	if err := theFleet.Healthy(); err != nil {
		t.Fatal(err)
	}
	logStart := logSize(theFleet)
	t.Cleanup(func() {
		if errs := kwokErrors(theFleet, logStart); len(errs) > 0 {
			t.Errorf("kwok logged %d errors during the test, e.g.:\n%s", len(errs), strings.Join(errs[:min(len(errs), 5)], "\n"))
		}
		if t.Failed() {
			t.Logf("kwok:\n%s", theFleet.LogTail(40))
		}
	})
	return c.Clientset(), c.Namespace(t)
}

func logSize(f *fleet.Fleet) int64 {
	st, err := os.Stat(f.Process().Log)
	if err != nil {
		return 0
	}
	return st.Size()
}

// kwokErrors returns kwok's ERROR and WARN log lines after offset: a
// stage whose selector or template fails only shows there (kwok treats a
// failing jq selector as not matching). NotFound and Conflict are left
// out: a stage played from a snapshot of a pod deleted or written meanwhile
// is refused by design (stages/pod-status.tmpl), and the newer event has
// rescheduled it.
func kwokErrors(f *fleet.Fleet, offset int64) []string {
	b, err := os.ReadFile(f.Process().Log)
	if err != nil || int64(len(b)) < offset {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		if (strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`)) && !strings.Contains(l, `not found`) && !strings.Contains(l, `the object has been modified`) {
			out = append(out, l)
		}
	}
	return out
}

// containerStatus returns the named container's status, or an empty one
// (no state, not ready) before the kubelet reported it, so checks fail with
// a message instead of a nil dereference.
func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return &corev1.ContainerStatus{Name: name}
}

func condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func isReady(p *corev1.Pod) bool {
	c := condition(p, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// setGate writes the gate condition through pods/status with a strategic
// merge patch on conditions (merged by type), as Rollbook does.
func setGate(ctx context.Context, cs kubernetes.Interface, ns, name string, status corev1.ConditionStatus) error {
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []any{map[string]any{
		"type": gate, "status": status, "lastTransitionTime": metav1.Now(),
	}}}})
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

// patchImage changes one container's image with a JSON patch that tests
// the old image first, as Rollbook's actuator does.
func patchImage(ctx context.Context, cs kubernetes.Interface, ns, name string, idx int, from, to string) error {
	path := fmt.Sprintf("/spec/containers/%d/image", idx)
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": from},
		{"op": "replace", "path": path, "value": to},
	})
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods(ns).Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{})
	return err
}

// parallel runs f over items with a few workers and returns the first error.
func parallel[T any](items []T, workers int, f func(T) error) error {
	work := make(chan T)
	errs := make(chan error, len(items))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range work {
				if err := f(it); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

func describe(p *corev1.Pod) string {
	b, _ := json.Marshal(p.Status)
	return fmt.Sprintf("%s/%s: %s", p.Namespace, p.Name, b)
}
