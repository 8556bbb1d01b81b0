package actuator_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
)

// TestGate: the gate sets only rollbook.dev/InPlaceUpdateReady, False then
// True, and leaves every other condition, Ready above all, as it was.
func TestGate(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	// What a kubelet would have written.
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "Scheduled", LastTransitionTime: metav1.Now()},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, Reason: "KubeletSaysSo", Message: "ready", LastTransitionTime: metav1.Now()},
	}
	p, err := e.cs.CoreV1().Pods(e.ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	others := func(p *corev1.Pod) {
		t.Helper()
		for _, want := range []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "Scheduled"},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, Reason: "KubeletSaysSo", Message: "ready"},
		} {
			c := condition(p, want.Type)
			if c == nil || c.Status != want.Status || c.Reason != want.Reason || c.Message != want.Message {
				t.Fatalf("condition %s is %+v, want it untouched: %+v", want.Type, c, want)
			}
		}
		if len(p.Status.Conditions) != 3 {
			t.Fatalf("conditions %+v, want the two the kubelet wrote and the gate", p.Status.Conditions)
		}
	}

	gate := planner.Action{Kind: planner.Gate, Pod: e.ref("web-0"), UID: string(p.UID), Rollout: e.ref("r"), Revision: "rev2",
		Reason: planner.ReasonUpdating, Message: "updating app to rollbook.local/app:v2"}
	f := e.do(gate, "")
	got := e.get("web-0")
	c := condition(got, planner.GateCondition)
	if c == nil || c.Status != corev1.ConditionFalse || c.Reason != planner.ReasonUpdating || c.Message != gate.Message || !c.LastTransitionTime.Time.Equal(e.now) {
		t.Fatalf("gate condition %+v, want False/%s at %s", c, planner.ReasonUpdating, e.now)
	}
	if f.ResultVersion != got.ResourceVersion {
		t.Fatalf("result version %s, pod is at %s", f.ResultVersion, got.ResourceVersion)
	}
	others(got)

	// The same gate again (a retry after a lost answer): fine, same state.
	e.do(gate, "")
	if c := condition(e.get("web-0"), planner.GateCondition); c == nil || c.Status != corev1.ConditionFalse {
		t.Fatalf("after a repeated gate: %+v", c)
	}

	ungate := gate
	ungate.Kind, ungate.Reason, ungate.Message = planner.Ungate, planner.ReasonReady, ""
	e.do(ungate, "")
	got = e.get("web-0")
	if c := condition(got, planner.GateCondition); c == nil || c.Status != corev1.ConditionTrue || c.Reason != planner.ReasonReady {
		t.Fatalf("ungate condition %+v, want True/%s", c, planner.ReasonReady)
	}
	others(got)
}

// TestUngateNewPod: a pod that declares the gate and has no conditions at
// all gets the condition True.
func TestUngateNewPod(t *testing.T) {
	e := newEnv(t)
	p := e.pod("fresh")
	e.do(planner.Action{Kind: planner.Ungate, Pod: e.ref("fresh"), UID: string(p.UID), Reason: planner.ReasonReady}, "")
	got := e.get("fresh")
	if c := condition(got, planner.GateCondition); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("conditions %+v, want the gate True", got.Status.Conditions)
	}
}

// TestPatchOneWrite: images (a container and an init container), a label
// and the state annotation change in one write: the pod's watch shows
// exactly one event between the version before and the version returned.
func TestPatchOneWrite(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	act := planner.Action{Kind: planner.Patch, Pod: e.ref("web-0"), UID: string(p.UID), Rollout: e.ref("r"), Revision: "rev2",
		Images: []planner.ContainerChange{
			{Name: "app", Index: 0, From: "rollbook.local/app:v1", To: "rollbook.local/app:v2"},
			{Name: "init", Init: true, Index: 0, From: "rollbook.local/init:v1", To: "rollbook.local/init:v2"},
		},
		Labels: map[string]string{planner.RevisionLabel: "rev2", "rollbook.dev/slashed": "x"},
		State:  `{"rollout":"r","rev":"rev2"}`,
	}
	f := e.do(act, "")
	got := e.get("web-0")
	if got.Spec.Containers[0].Image != "rollbook.local/app:v2" || got.Spec.InitContainers[0].Image != "rollbook.local/init:v2" {
		t.Fatalf("images %s, %s", got.Spec.Containers[0].Image, got.Spec.InitContainers[0].Image)
	}
	if got.Spec.Containers[1].Image != "rollbook.local/sidecar:v1" {
		t.Fatalf("sidecar image changed to %s", got.Spec.Containers[1].Image)
	}
	if got.Labels[planner.RevisionLabel] != "rev2" || got.Labels["rollbook.dev/slashed"] != "x" || got.Labels["app"] != "web" {
		t.Fatalf("labels %v", got.Labels)
	}
	if got.Annotations[planner.StateAnnotation] != act.State || got.Annotations["note"] != "keep" {
		t.Fatalf("annotations %v", got.Annotations)
	}
	if f.ResultVersion != got.ResourceVersion {
		t.Fatalf("result version %s, pod is at %s", f.ResultVersion, got.ResourceVersion)
	}
	evs := e.eventsBetween("web-0", p.ResourceVersion, f.ResultVersion)
	if len(evs) != 1 || evs[0].Type != watch.Modified {
		t.Fatalf("%d watch events between %s and %s, want one MODIFIED", len(evs), p.ResourceVersion, f.ResultVersion)
	}
}

// TestPatchCreatesMaps: a pod with no labels and no annotations gets both
// maps created by the same patch; a plan that wrongly believes they are
// missing fails as a conflict instead of wiping them.
func TestPatchCreatesMaps(t *testing.T) {
	e := newEnv(t)
	bare := e.pod("bare", func(p *corev1.Pod) { p.Labels, p.Annotations = nil, nil })
	act := planner.Action{Kind: planner.Patch, Pod: e.ref("bare"), UID: string(bare.UID), Revision: "rev2",
		Images:       []planner.ContainerChange{{Name: "app", From: "rollbook.local/app:v1", To: "rollbook.local/app:v2"}},
		Labels:       map[string]string{planner.RevisionLabel: "rev2"},
		State:        "{}",
		CreateLabels: true, CreateAnnotations: true,
	}
	e.do(act, "")
	got := e.get("bare")
	if len(got.Labels) != 1 || got.Labels[planner.RevisionLabel] != "rev2" || len(got.Annotations) != 1 || got.Annotations[planner.StateAnnotation] != "{}" {
		t.Fatalf("labels %v annotations %v", got.Labels, got.Annotations)
	}

	full := e.pod("full")
	stale := act
	stale.Pod, stale.UID = e.ref("full"), string(full.UID)
	e.do(stale, journal.ClassConflict)
	after := e.get("full")
	if after.ResourceVersion != full.ResourceVersion || after.Labels["app"] != "web" || after.Spec.Containers[0].Image != "rollbook.local/app:v1" {
		t.Fatalf("a refused patch changed the pod: %v %s", after.Labels, after.Spec.Containers[0].Image)
	}
}

// TestPatchMetadata: one patch removes label `old` and annotation `gone`
// and adds annotation `new`; every other label and annotation, including
// those no template names (an injector's, the state), stays as it was.
// The same patch again, now stale (`old` is gone), fails as a conflict and
// changes nothing.
func TestPatchMetadata(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0", func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "web", "old": "1", "topology.kubernetes.io/zone": "z1"}
		p.Annotations = map[string]string{"note": "keep", "gone": "x", "mesh.example/injected": "true"}
	})
	act := planner.Action{Kind: planner.Patch, Pod: e.ref("web-0"), UID: string(p.UID), Revision: "rev2",
		Labels:            map[string]string{planner.RevisionLabel: "rev2"},
		RemoveLabels:      []string{"old"},
		Annotations:       map[string]string{"new": "v"},
		RemoveAnnotations: []string{"gone"},
		State:             "{}",
	}
	f := e.do(act, "")
	got := e.get("web-0")
	wantLabels := map[string]string{"app": "web", "topology.kubernetes.io/zone": "z1", planner.RevisionLabel: "rev2"}
	wantAnnotations := map[string]string{"note": "keep", "mesh.example/injected": "true", "new": "v", planner.StateAnnotation: "{}"}
	if !maps.Equal(got.Labels, wantLabels) || !maps.Equal(got.Annotations, wantAnnotations) {
		t.Fatalf("labels %v annotations %v\nwant labels %v annotations %v", got.Labels, got.Annotations, wantLabels, wantAnnotations)
	}
	if got.Spec.Containers[0].Image != p.Spec.Containers[0].Image {
		t.Fatalf("image changed to %s", got.Spec.Containers[0].Image)
	}
	if evs := e.eventsBetween("web-0", p.ResourceVersion, f.ResultVersion); len(evs) != 1 {
		t.Fatalf("%d watch events for one patch", len(evs))
	}

	stale := act
	stale.Revision = "rev3"
	stale.Annotations = map[string]string{"new": "w"}
	e.do(stale, journal.ClassConflict)
	if after := e.get("web-0"); after.ResourceVersion != got.ResourceVersion {
		t.Fatalf("a refused patch changed the pod: annotations %v", after.Annotations)
	}
}

// TestPatchStaleImage: someone changed the image after the plan saw it; the
// patch fails as a conflict and changes nothing (no label, no annotation).
func TestPatchStaleImage(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	p.Spec.Containers[0].Image = "rollbook.local/app:hotfix"
	p, err := e.cs.CoreV1().Pods(e.ns).Update(context.Background(), p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.do(planner.Action{Kind: planner.Patch, Pod: e.ref("web-0"), UID: string(p.UID), Revision: "rev2",
		Images: []planner.ContainerChange{{Name: "app", From: "rollbook.local/app:v1", To: "rollbook.local/app:v2"}},
		Labels: map[string]string{planner.RevisionLabel: "rev2"},
		State:  "{}",
	}, journal.ClassConflict)
	got := e.get("web-0")
	if got.ResourceVersion != p.ResourceVersion || got.Spec.Containers[0].Image != "rollbook.local/app:hotfix" ||
		got.Labels[planner.RevisionLabel] != "" || got.Annotations[planner.StateAnnotation] != "" {
		t.Fatalf("a refused patch changed the pod: rv %s→%s image %s labels %v", p.ResourceVersion, got.ResourceVersion, got.Spec.Containers[0].Image, got.Labels)
	}
}

// TestPatchWrongContainerIndex: the container at the planned index has
// another name (the plan's index is stale or wrong): conflict.
func TestPatchWrongContainerIndex(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	e.do(planner.Action{Kind: planner.Patch, Pod: e.ref("web-0"), UID: string(p.UID), Revision: "rev2",
		Images: []planner.ContainerChange{{Name: "app", Index: 1, From: "rollbook.local/sidecar:v1", To: "rollbook.local/app:v2"}},
	}, journal.ClassConflict)
	if got := e.get("web-0"); got.ResourceVersion != p.ResourceVersion {
		t.Fatal("a refused patch changed the pod")
	}
}

// TestPatchInvalidImage: an image the apiserver refuses is invalid, not a
// conflict: replanning cannot fix it. NB: the apiserver checks little of an
// image reference: v1.37.2 accepts "rollbook.local/App:V2" and "a b"; it
// refuses leading or trailing whitespace.
func TestPatchInvalidImage(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	for _, img := range []string{"rollbook.local/app:v2 ", " rollbook.local/app:v2"} {
		e.do(planner.Action{Kind: planner.Patch, Pod: e.ref("web-0"), UID: string(p.UID), Revision: img,
			Images: []planner.ContainerChange{{Name: "app", From: "rollbook.local/app:v1", To: img}},
		}, journal.ClassInvalid)
	}
	if got := e.get("web-0"); got.ResourceVersion != p.ResourceVersion {
		t.Fatal("a refused patch changed the pod")
	}
}

// podActions are one action of each pod kind against the pod, all valid
// for it.
func podActions(e *env, name, uid string) []planner.Action {
	ref := e.ref(name)
	return []planner.Action{
		{Kind: planner.Gate, Pod: ref, UID: uid, Reason: planner.ReasonUpdating},
		{Kind: planner.Ungate, Pod: ref, UID: uid, Reason: planner.ReasonReady},
		{Kind: planner.Patch, Pod: ref, UID: uid, Revision: "rev2",
			Images: []planner.ContainerChange{{Name: "app", From: "rollbook.local/app:v1", To: "rollbook.local/app:v2"}},
			Labels: map[string]string{planner.RevisionLabel: "rev2"}, State: "{}"},
		{Kind: planner.Resize, Pod: ref, UID: uid, Revision: "rev2",
			Resources: []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "200m"}}}},
		{Kind: planner.Recreate, Pod: ref, UID: uid, Revision: "rev2"},
	}
}

// TestReplacedPod: every pod write planned against a pod that was deleted
// and created again under the same name fails as a conflict and leaves the
// new pod as it was: the UID precondition holds for each kind.
func TestReplacedPod(t *testing.T) {
	e := newEnv(t)
	old := e.pod("web-0")
	e.deleteNow("web-0")
	fresh := e.pod("web-0")
	for _, act := range podActions(e, "web-0", string(old.UID)) {
		t.Run(string(act.Kind), func(t *testing.T) {
			e.t = t
			e.do(act, journal.ClassConflict)
			got := e.get("web-0")
			if got.UID != fresh.UID || got.ResourceVersion != fresh.ResourceVersion {
				t.Fatalf("the replacement pod changed: uid %s rv %s→%s", got.UID, fresh.ResourceVersion, got.ResourceVersion)
			}
		})
	}
}

// TestMissingPod: every pod write on a pod that does not exist is gone.
func TestMissingPod(t *testing.T) {
	e := newEnv(t)
	for _, act := range podActions(e, "nobody", "00000000-0000-0000-0000-000000000001") {
		t.Run(string(act.Kind), func(t *testing.T) {
			e.t = t
			e.do(act, journal.ClassGone)
		})
	}
}

// TestRecreate evicts the pod with the planned UID, and only it: an
// unbound pod is deleted at once, a bound one (no kubelet here confirms
// it) is marked terminating with the DisruptionTarget condition the
// eviction sets. The eviction answers no resourceVersion.
func TestRecreate(t *testing.T) {
	e := newEnv(t)
	victim := e.pod("web-0")
	bystander := e.pod("web-1")
	f := e.do(planner.Action{Kind: planner.Recreate, Pod: e.ref("web-0"), UID: string(victim.UID), Revision: "rev2"}, "")
	if f.ResultVersion != "" {
		t.Fatalf("recreate returned resourceVersion %q; the eviction answers none", f.ResultVersion)
	}
	if _, err := e.cs.CoreV1().Pods(e.ns).Get(context.Background(), "web-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("web-0 after its eviction: %v, want NotFound (an unbound pod is deleted without grace)", err)
	}
	if got := e.get("web-1"); got.ResourceVersion != bystander.ResourceVersion {
		t.Fatal("recreate touched another pod")
	}
	if got := e.reqs.all(); !slices.Equal(got, []string{"POST /api/v1/namespaces/" + e.ns + "/pods/web-0/eviction"}) {
		t.Fatalf("requests %q, want one eviction", got)
	}

	bound := e.pod("web-2", func(p *corev1.Pod) { p.Spec.NodeName = "nowhere" })
	t.Cleanup(func() { e.deleteNow("web-2") })
	e.do(planner.Action{Kind: planner.Recreate, Pod: e.ref("web-2"), UID: string(bound.UID), Revision: "rev2"}, "")
	got := e.get("web-2")
	if got.DeletionTimestamp == nil {
		t.Fatal("a bound pod's eviction left it without a deletionTimestamp")
	}
	if c := condition(got, corev1.DisruptionTarget); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("conditions %+v, want DisruptionTarget True", got.Status.Conditions)
	}
}

// TestRecreateBlockedByBudget: with a PodDisruptionBudget whose
// minAvailable equals the ready pods, the eviction is refused, classified
// blocked, and its error names the budget; the pod stays. Two budgets over
// the pod are refused too. Once the budget allows a disruption, the same
// eviction goes through: it was the budget that held.
func TestRecreateBlockedByBudget(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var pods []*corev1.Pod
	for _, name := range []string{"web-0", "web-1"} {
		p := e.pod(name)
		// What a kubelet would report: running and ready. The disruption
		// controller counts pods with Ready True as healthy.
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
		p, err := e.cs.CoreV1().Pods(e.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	two := intstr.FromInt32(2)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &two,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		},
	}
	pdb, err := e.cs.PolicyV1().PodDisruptionBudgets(e.ns).Create(ctx, pdb, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.waitBudget("web", 2, 0)

	evict := planner.Action{Kind: planner.Recreate, Pod: e.ref("web-0"), UID: string(pods[0].UID), Rollout: e.ref("r"), Revision: "rev2"}
	f := e.do(evict, journal.ClassBlocked)
	if want := "The disruption budget web needs 2 healthy pods and has 2 currently"; !strings.Contains(f.Error, want) {
		t.Fatalf("journaled error %q does not name the budget (%q)", f.Error, want)
	}
	if got := e.get("web-0"); got.DeletionTimestamp != nil || got.ResourceVersion != pods[0].ResourceVersion {
		t.Fatal("a refused eviction changed the pod")
	}

	other := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web-too"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: pdb.Spec.Selector},
	}
	if _, err := e.cs.PolicyV1().PodDisruptionBudgets(e.ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.do(evict, journal.ClassBlocked)
	if err := e.cs.PolicyV1().PodDisruptionBudgets(e.ns).Delete(ctx, "web-too", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	lower := []byte(`{"spec":{"minAvailable":1}}`)
	if _, err := e.cs.PolicyV1().PodDisruptionBudgets(e.ns).Patch(ctx, "web", types.MergePatchType, lower, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitBudget("web", 2, 1)
	e.do(evict, "")
	cluster.Eventually(t, wait, "web-0 evicted", func() error {
		_, err := e.cs.CoreV1().Pods(e.ns).Get(ctx, "web-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("web-0 still there (%v)", err)
	})
	if got := e.get("web-1"); got.DeletionTimestamp != nil {
		t.Fatal("the eviction of web-0 took web-1 too")
	}

	// A stale UID on a pod the budget guards: a conflict, but the handler
	// has taken the disruption from the budget before it checked the UID.
	zero := []byte(`{"spec":{"minAvailable":0}}`)
	if _, err := e.cs.PolicyV1().PodDisruptionBudgets(e.ns).Patch(ctx, "web", types.MergePatchType, zero, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitBudget("web", 1, 1)
	stale := planner.Action{Kind: planner.Recreate, Pod: e.ref("web-1"), UID: string(pods[0].UID), Rollout: e.ref("r"), Revision: "rev2"}
	e.do(stale, journal.ClassConflict)
	b, err := e.cs.PolicyV1().PodDisruptionBudgets(e.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, taken := b.Status.DisruptedPods["web-1"]; !taken || e.get("web-1").DeletionTimestamp != nil {
		t.Fatalf("after a stale-UID eviction: budget status %+v; want web-1 among its disrupted pods, and web-1 kept", b.Status)
	}
}

// waitBudget polls until the disruption controller has computed the
// budget's status for its current spec: healthy pods counted and
// disruptionsAllowed as wanted.
func (e *env) waitBudget(name string, healthy, allowed int32) {
	e.t.Helper()
	cluster.Eventually(e.t, wait, "PodDisruptionBudget "+name+" computed", func() error {
		b, err := e.cs.PolicyV1().PodDisruptionBudgets(e.ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := b.Status
		if st.ObservedGeneration != b.Generation || st.CurrentHealthy != healthy || st.DisruptionsAllowed != allowed {
			return fmt.Errorf("generation %d, status %+v; want observed, %d healthy, %d allowed", b.Generation, st, healthy, allowed)
		}
		return nil
	})
}

// TestResizeUnboundPod: pods/resize of a pod no node runs yet.
func TestResizeUnboundPod(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	f := e.do(planner.Action{Kind: planner.Resize, Pod: e.ref("web-0"), UID: string(p.UID), Revision: "rev2",
		Resources: []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "200m", "memory": "128Mi"}, Limits: map[string]string{"cpu": "2"}}}}, "")
	got := e.get("web-0")
	r := got.Spec.Containers[0].Resources
	if r.Requests.Cpu().String() != "200m" || r.Requests.Memory().String() != "128Mi" || r.Limits.Cpu().String() != "2" || r.Limits.Memory().String() != "256Mi" {
		t.Fatalf("resources after resize: %v", r)
	}
	if len(got.Spec.Containers[1].Resources.Requests) != 0 {
		t.Fatalf("sidecar resources changed: %v", got.Spec.Containers[1].Resources)
	}
	if f.ResultVersion != got.ResourceVersion {
		t.Fatalf("result version %s, pod at %s", f.ResultVersion, got.ResourceVersion)
	}
}

// TestResizeRefused: a resize validation refuses (requests above limits)
// is invalid, and changes nothing.
func TestResizeRefused(t *testing.T) {
	e := newEnv(t)
	p := e.pod("web-0")
	e.do(planner.Action{Kind: planner.Resize, Pod: e.ref("web-0"), UID: string(p.UID), Revision: "rev2",
		Resources: []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "4"}}}}, journal.ClassInvalid)
	if got := e.get("web-0"); got.ResourceVersion != p.ResourceVersion {
		t.Fatal("a refused resize changed the pod")
	}
}

// TestResizeOnNode: on a pod bound to a Node, the resize admission plugin
// checks the node's allocatable: a resize that fits succeeds, one that does
// not is refused (403 with cause NodeCapacity) and classified invalid.
func TestResizeOnNode(t *testing.T) {
	e := newEnv(t)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: e.ns + "-node", Labels: map[string]string{corev1.LabelOSStable: "linux"}}}
	node, err := e.cs.CoreV1().Nodes().Create(context.Background(), node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.cs.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{}) })
	// A patch, not an update: the node controllers write the new node too.
	alloc := []byte(`{"status":{"capacity":{"cpu":"2","memory":"4Gi","pods":"110"},"allocatable":{"cpu":"2","memory":"4Gi","pods":"110"}}}`)
	if _, err := e.cs.CoreV1().Nodes().Patch(context.Background(), node.Name, types.MergePatchType, alloc, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	p := e.pod("web-0", func(p *corev1.Pod) { p.Spec.NodeName = node.Name })

	fits := planner.Action{Kind: planner.Resize, Pod: e.ref("web-0"), UID: string(p.UID), Revision: "rev2",
		Resources: []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "500m"}}}}
	// The admission plugin reads nodes from an informer: until it has seen
	// the test's new node it refuses with "node not found" (class other).
	cluster.Eventually(t, wait, "resize admitted once the node is known", func() error {
		e.seq++
		f, err := e.act.Do(context.Background(), fits, e.seq, 1)
		if err != nil {
			return fmt.Errorf("%s: %s", f.Class, statusJSON(err))
		}
		return nil
	})
	if got := e.get("web-0"); got.Spec.Containers[0].Resources.Requests.Cpu().String() != "500m" {
		t.Fatalf("requests after resize: %v", got.Spec.Containers[0].Resources.Requests)
	}
	before := e.get("web-0")
	tooBig := fits
	tooBig.Revision = "rev3"
	tooBig.Resources = []planner.ResourceChange{{Name: "app", Requests: map[string]string{"cpu": "3"}, Limits: map[string]string{"cpu": "3"}}}
	e.do(tooBig, journal.ClassInvalid)
	if got := e.get("web-0"); got.ResourceVersion != before.ResourceVersion {
		t.Fatal("a refused resize changed the pod")
	}
}
