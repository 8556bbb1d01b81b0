package actuator_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"rollbook.dev/rollbook/actuator"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/test/cluster"
)

// TestRolloutStatus: the status subresource gets what the planner computed;
// fields the next status leaves empty are removed, not left stale; the
// spec is never touched.
func TestRolloutStatus(t *testing.T) {
	e := newEnv(t)
	r := e.rollout("web-2-0")
	act := planner.Action{Kind: planner.Status, Rollout: e.ref("web-2-0"), RolloutUID: string(r.GetUID()),
		Status: &projections.RolloutStatus{
			ObservedGeneration: r.GetGeneration(), Phase: projections.PhaseProgressing,
			Replicas: 3, Updated: 1, UpdatedReady: 1, Unavailable: 1, CurrentStep: 1,
			Conditions: []metav1.Condition{{Type: "Progressing", Status: metav1.ConditionTrue, Reason: "Updating", Message: "1 of 3 updated"}},
			TraceID:    "4bf92f3577b34da6a3ce929d0e0e4736", TargetRevision: "rev2", JournalSequence: 42,
		}}
	f := e.do(act, "")
	got := e.getRollout("web-2-0")
	if f.ResultVersion != got.GetResourceVersion() {
		t.Fatalf("result version %s, rollout at %s", f.ResultVersion, got.GetResourceVersion())
	}
	st := got.Object["status"].(map[string]any)
	for k, want := range map[string]any{"phase": "Progressing", "replicas": int64(3), "updated": int64(1), "updatedReady": int64(1),
		"unavailable": int64(1), "currentStep": int64(1), "traceID": act.Status.TraceID, "targetRevision": "rev2", "journalSequence": int64(42)} {
		if st[k] != want {
			t.Fatalf("status.%s = %v (%T), want %v; status %v", k, st[k], st[k], want, st)
		}
	}
	conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
	if len(conds) != 1 || conds[0].(map[string]any)["lastTransitionTime"] != e.now.Format("2006-01-02T15:04:05Z") {
		t.Fatalf("conditions %v: want one, stamped with the actuator's clock %s", conds, e.now)
	}
	if !act.Status.Conditions[0].LastTransitionTime.IsZero() {
		t.Fatal("the actuator stamped the action's own status: actions are values")
	}

	done := act
	done.Status = &projections.RolloutStatus{ObservedGeneration: r.GetGeneration(), Phase: projections.PhaseSucceeded, Replicas: 3, Updated: 3, UpdatedReady: 3}
	e.do(done, "")
	got = e.getRollout("web-2-0")
	st = got.Object["status"].(map[string]any)
	for _, gone := range []string{"conditions", "traceID", "targetRevision", "journalSequence"} {
		if v, ok := st[gone]; ok {
			t.Fatalf("status.%s = %v survived a status without it", gone, v)
		}
	}
	if st["phase"] != "Succeeded" || st["updated"] != int64(3) || st["unavailable"] != int64(0) {
		t.Fatalf("status %v", st)
	}
	if got.GetGeneration() != r.GetGeneration() || !equalJSON(t, got.Object["spec"], r.Object["spec"]) {
		t.Fatalf("the spec changed: %v", got.Object["spec"])
	}
}

// TestRolloutReplaced: status and events for a rollout deleted and created
// again under the same name: the status write is a conflict; a status for
// a rollout that no longer exists is gone.
func TestRolloutReplaced(t *testing.T) {
	e := newEnv(t)
	old := e.rollout("web")
	if err := e.dyn.Resource(actuator.RolloutsGVR).Namespace(e.ns).Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, wait, "rollout deleted", func() error {
		_, err := e.dyn.Resource(actuator.RolloutsGVR).Namespace(e.ns).Get(context.Background(), "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	stale := planner.Action{Kind: planner.Status, Rollout: e.ref("web"), RolloutUID: string(old.GetUID()),
		Status: &projections.RolloutStatus{Phase: projections.PhaseProgressing, Replicas: 1}}
	e.do(stale, journal.ClassGone)

	fresh := e.rollout("web")
	e.do(stale, journal.ClassConflict)
	if got := e.getRollout("web"); got.GetResourceVersion() != fresh.GetResourceVersion() {
		t.Fatal("a refused status write changed the new rollout")
	}
}

// TestEvent: an Event on the rollout, as `kubectl describe ipr` shows it;
// the same event again (a retry) records nothing twice.
func TestEvent(t *testing.T) {
	e := newEnv(t)
	r := e.rollout("web")
	act := planner.Action{Kind: planner.Event, Rollout: e.ref("web"), RolloutUID: string(r.GetUID()),
		EventType: corev1.EventTypeWarning, Reason: "NoReadinessGate", Message: "pod web-0 does not declare rollbook.dev/InPlaceUpdateReady"}
	f := e.do(act, "")
	if f.ResultVersion == "" {
		t.Fatal("no resourceVersion for the created event")
	}
	e.do(act, "")
	evs, err := e.cs.CoreV1().Events(e.ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=InPlaceRollout,involvedObject.name=web",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs.Items) != 1 {
		t.Fatalf("%d events, want 1", len(evs.Items))
	}
	ev := evs.Items[0]
	io := ev.InvolvedObject
	if io.APIVersion != "rollbook.dev/v1alpha1" || io.Kind != "InPlaceRollout" || io.Name != "web" || io.Namespace != e.ns || io.UID != r.GetUID() {
		t.Fatalf("involvedObject %+v", io)
	}
	if ev.Type != corev1.EventTypeWarning || ev.Reason != act.Reason || ev.Message != act.Message ||
		ev.Source.Component != "rollbook" || !ev.LastTimestamp.Time.Equal(e.now) || ev.Count != 1 {
		t.Fatalf("event %+v", ev)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	return mustJSON(t, a) == mustJSON(t, b)
}

// TestStatusMergePatchIgnoresUID pins the apiserver behaviour that makes
// the Status action a JSON patch with `test /metadata/uid` rather than a
// merge patch carrying metadata.uid (as pods' writes are): on a custom
// resource's status subresource, metadata in a merge patch is dropped, so
// a stale UID does not stop the write. If this test starts failing, the
// apiserver now enforces it and either form would do.
func TestStatusMergePatchIgnoresUID(t *testing.T) {
	e := newEnv(t)
	r := e.rollout("web")
	body := []byte(`{"metadata":{"uid":"00000000-0000-0000-0000-000000000001"},"status":{"phase":"Progressing"}}`)
	_, err := e.dyn.Resource(actuator.RolloutsGVR).Namespace(e.ns).Patch(context.Background(), "web", types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		t.Fatalf("merge patch with a wrong uid: %v (the apiserver enforces it now)", err)
	}
	if got := e.getRollout("web"); got.GetUID() != r.GetUID() || got.Object["status"].(map[string]any)["phase"] != "Progressing" {
		t.Fatalf("rollout after the patch: uid %s status %v", got.GetUID(), got.Object["status"])
	}
}
