package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
)

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// hookController is a small hook controller as an operator of a stateful
// system would write one against Rollbook's contract: it watches pods
// marked rollbook.dev/hook and, once the test allows it for that pod and
// marker, sets the release the rollout's hook names (a label for
// pre-update, a condition for post-update).
type hookController struct {
	t        *testing.T
	pods     dynamic.ResourceInterface
	preLabel string // key; the value is "true"
	postCond string
	mu       sync.Mutex
	allow    func(pod, marker string) bool
	kick     chan struct{}
	released []string // "pod marker", in order
}

func startHookController(t *testing.T, c *cluster.Cluster, ns, preLabel, postCond string) *hookController {
	h := &hookController{t: t, pods: dynamic.NewForConfigOrDie(c.Config()).Resource(podsResource).Namespace(ns),
		preLabel: preLabel, postCond: postCond, allow: func(string, string) bool { return false }, kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// setAllow changes which pods the hook controller releases, and has it
// look again at every marked pod.
func (h *hookController) setAllow(f func(pod, marker string) bool) {
	h.mu.Lock()
	h.allow = f
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *hookController) releases() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.released...)
}

// run watches marked pods and reconciles all of them on every event and
// every kick, re-watching when the watch ends.
func (h *hookController) run(ctx context.Context) {
	sel := metav1.ListOptions{LabelSelector: planner.HookLabel}
	for ctx.Err() == nil {
		w, err := h.pods.Watch(ctx, sel)
		if err != nil {
			if ctx.Err() == nil {
				h.t.Logf("hook controller: watch: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond): // backoff before watching again
			}
			continue
		}
		h.reconcile(ctx, sel)
		for open := true; open; {
			select {
			case <-ctx.Done():
				open = false
			case _, ok := <-w.ResultChan():
				open = ok
			case <-h.kick:
			}
			if open {
				h.reconcile(ctx, sel)
			}
		}
		w.Stop()
	}
}

func (h *hookController) reconcile(ctx context.Context, sel metav1.ListOptions) {
	list, err := h.pods.List(ctx, sel)
	if err != nil {
		return
	}
	h.mu.Lock()
	allow := h.allow
	h.mu.Unlock()
	for _, p := range list.Items {
		marker := p.GetLabels()[planner.HookLabel]
		if !allow(p.GetName(), marker) {
			continue
		}
		var err error
		switch {
		case marker == planner.HookPreUpdate && p.GetLabels()[h.preLabel] != "true":
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, h.preLabel)
			_, err = h.pods.Patch(ctx, p.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		case marker == planner.HookPostUpdate && !conditionTrue(p, h.postCond):
			patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"True","reason":"Rejoined","lastTransitionTime":%q}]}}`,
				h.postCond, time.Now().UTC().Format(time.RFC3339))
			_, err = h.pods.Patch(ctx, p.GetName(), types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
		default:
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				h.t.Logf("hook controller: releasing %s (%s): %v", p.GetName(), marker, err)
			}
			continue
		}
		h.mu.Lock()
		h.released = append(h.released, p.GetName()+" "+marker)
		h.mu.Unlock()
	}
}

func conditionTrue(p unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(p.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			return m["status"] == "True"
		}
	}
	return false
}

func podCondition(p corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// TestLifecycleHooksHoldAndRelease: with a pre-update hook, a gated pod
// keeps its image while its hook holds it, with a HookWaiting condition
// naming it; released by the hook controller it is patched, verified,
// ungated and marked post-update; the post-update hook's release lets the
// next pod start. The marker and the clearing of the releases ride on
// the gate and ungate writes: still 3 writes per pod (gate, patch, ungate)
// plus the initial ungate of a pod first seen.
func TestLifecycleHooksHoldAndRelease(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	dir := t.TempDir()
	r := startController(t, c, dir, ns)
	const replicas = 3
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("db", stsOpts{replicas: replicas, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "db", replicas, 2*time.Minute)
	hooks := startHookController(t, c, ns, "example.com/drained", "example.com/Rejoined")

	setImage(t, c, ns, "db", "app", "registry.example/app:v2")
	spec := workloadRollout("db", map[string]any{"maxUnavailable": 1})
	spec["lifecycle"] = map[string]any{
		"preUpdate":  map[string]any{"label": map[string]any{"key": "example.com/drained", "value": "true"}, "timeoutSeconds": int64(600)},
		"postUpdate": map[string]any{"condition": "example.com/Rejoined", "timeoutSeconds": int64(600)},
	}
	createRollout(t, c, ns, "db-v2", spec)

	// The first pod is gated and marked; the rollout says it waits on it.
	var held string
	cluster.Eventually(t, time.Minute, "a pod held by its pre-update hook", func() error {
		st, err := rolloutStatus(c, ns, "db-v2")
		if err != nil {
			return err
		}
		cond := condition(st, "HookWaiting")
		if cond == nil || cond.Status != "True" {
			return fmt.Errorf("no HookWaiting=True: %s", condSummary(st.Conditions))
		}
		for name, p := range podsByName(t, c, ns) {
			if p.Labels[planner.HookLabel] == planner.HookPreUpdate {
				held = name
			}
		}
		if held == "" || !strings.Contains(cond.Message, held+" for its pre-update hook (label example.com/drained=true) since ") {
			return fmt.Errorf("HookWaiting %q does not name the held pod %q", cond.Message, held)
		}
		return nil
	})
	// The status with HookWaiting came from a plan that saw the pod held
	// and did not patch it.
	for name, p := range podsByName(t, c, ns) {
		if got := p.Spec.Containers[0].Image; got != "registry.example/app:v1" {
			t.Fatalf("%s runs %s while %s is held: nothing may be patched before the hook releases", name, got, held)
		}
		gate := podCondition(p, planner.GateCondition)
		isHeld := name == held
		if isHeld != (gate != nil && gate.Status == corev1.ConditionFalse) {
			t.Fatalf("%s: gate %+v; only the held pod %s is gated (maxUnavailable 1)", name, gate, held)
		}
	}

	// Release every pod, at both hooks, from now on.
	hooks.setAllow(func(string, string) bool { return true })
	waitPhase(t, c, ns, "db-v2", "Succeeded", 3*time.Minute)
	after := podsByName(t, c, ns)
	for name, p := range after {
		if got := p.Spec.Containers[0].Image; got != "registry.example/app:v2" {
			t.Errorf("%s runs %s after the rollout", name, got)
		}
		if p.Labels[planner.HookLabel] != planner.HookPostUpdate || p.Labels["example.com/drained"] != "true" {
			t.Errorf("%s: labels %v, want the post-update marker and the pre-update release", name, p.Labels)
		}
		if rc := podCondition(p, "example.com/Rejoined"); rc == nil || rc.Status != corev1.ConditionTrue {
			t.Errorf("%s: post-update release condition %+v", name, rc)
		}
	}
	// Each pod was released once at each hook, the held one first, and
	// one pod at a time: a pod's pre-update release comes after the
	// previous pod's post-update release.
	rel := hooks.releases()
	if len(rel) != 2*replicas || rel[0] != held+" "+planner.HookPreUpdate {
		t.Fatalf("releases %v: want each pod released once per hook, %s first", rel, held)
	}
	for i := 0; i < len(rel); i += 2 {
		pod, _, _ := strings.Cut(rel[i], " ")
		if rel[i] != pod+" "+planner.HookPreUpdate || rel[i+1] != pod+" "+planner.HookPostUpdate {
			t.Fatalf("releases %v: a pod started before the previous one's post-update hook released it", rel)
		}
	}
	r.waitSeen(t, ns+"/db-v2", "Succeeded")
	r.stop(t)
	au := readAudit(t, dir)
	for pod, kinds := range au.actions {
		if kinds["gate"] != 1 || kinds["patch"] != 1 || kinds["ungate"] != 2 {
			t.Errorf("pod %s: writes %v, want gate 1, patch 1, ungate 2 (one when first seen, one after verify): hooks add no write", pod, kinds)
		}
	}
	if au.maxGated > 1 {
		t.Errorf("%d pods gated at once, maxUnavailable 1", au.maxGated)
	}
	// The report shows where each pod waited for its hooks.
	out := filepath.Join(t.TempDir(), "report.html")
	if err := reportCmd(ctx, []string{"--dir", filepath.Join(dir, "journal"), "-o", out, "--rollout", ns + "/db-v2"}); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(html), `class="w hook"`); n < replicas {
		t.Errorf("the report shows %d lifecycle hook waits, want one per pod at least (%d)", n, replicas)
	}
}

// TestLifecycleHookTimeout: a pre-update hook nobody answers times out:
// the rollout pauses with a HookTimedOut condition naming the pod and a
// Warning Event, the pod stays gated on its old image; a release given
// later (here by hand, on the pod's status) lets the rollout finish.
func TestLifecycleHookTimeout(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	r := startController(t, c, t.TempDir(), ns)
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("db", stsOpts{replicas: 1, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "db", 1, 2*time.Minute)
	setImage(t, c, ns, "db", "app", "registry.example/app:v2")
	spec := workloadRollout("db", map[string]any{})
	spec["lifecycle"] = map[string]any{"preUpdate": map[string]any{"condition": "example.com/Drained", "timeoutSeconds": int64(2)}}
	createRollout(t, c, ns, "db-v2", spec)

	st := waitPhase(t, c, ns, "db-v2", "Paused", time.Minute)
	cond := condition(st, "HookTimedOut")
	if cond == nil || cond.Status != "True" || cond.Reason != "Paused" || !strings.Contains(cond.Message, "db-0 by its pre-update hook (condition example.com/Drained=True)") {
		t.Fatalf("HookTimedOut %+v does not say which pod and hook timed out", cond)
	}
	if p := condition(st, "Paused"); p == nil || p.Reason != "HookTimeout" {
		t.Errorf("Paused condition %+v, want reason HookTimeout", p)
	}
	cluster.Eventually(t, 30*time.Second, "a Warning Event HookTimeout", func() error {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=InPlaceRollout,involvedObject.name=db-v2"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Type == "Warning" && e.Reason == "HookTimeout" && strings.Contains(e.Message, "db-0: the pre-update hook") {
				return nil
			}
		}
		return fmt.Errorf("events: %+v", evs.Items)
	})
	p, err := cs.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gate := podCondition(*p, planner.GateCondition)
	if p.Spec.Containers[0].Image != "registry.example/app:v1" || gate == nil || gate.Status != corev1.ConditionFalse || p.Labels[planner.HookLabel] != planner.HookPreUpdate {
		t.Fatalf("db-0 after the timeout: image %s, gate %+v, labels %v; want held: old image, gated, marked", p.Spec.Containers[0].Image, gate, p.Labels)
	}
	if rc := podCondition(*p, "example.com/Drained"); rc == nil || rc.Status != corev1.ConditionFalse || rc.Reason != planner.ReasonHookWaiting {
		t.Errorf("the release condition %+v was not cleared by the gate write", rc)
	}

	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":"example.com/Drained","status":"True","reason":"DrainedByHand","lastTransitionTime":%q}]}}`, time.Now().UTC().Format(time.RFC3339))
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "db-0", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	st = waitPhase(t, c, ns, "db-v2", "Succeeded", time.Minute)
	if hc := condition(st, "HookTimedOut"); hc == nil || hc.Status != "False" || hc.Reason != "Released" {
		t.Errorf("HookTimedOut after the release: %+v", hc)
	}
	if err := allReady(c, ns, 1); err != nil {
		t.Fatal(err)
	}
	r.waitSeen(t, ns+"/db-v2", "Succeeded")
}
