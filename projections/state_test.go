package projections

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
)

// folder builds records the way the journal would and folds them.
type folder struct {
	t       *testing.T
	s       *State
	seq     uint64
	now     time.Time
	records []journal.Record
}

func newFolder(t *testing.T) *folder {
	return &folder{t: t, s: New(), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (f *folder) record(kind journal.Kind, key string, body any) journal.Record {
	f.t.Helper()
	b, err := journal.EncodeBody(body)
	if err != nil {
		f.t.Fatal(err)
	}
	f.seq++
	return journal.Record{Seq: f.seq, Time: f.now, Kind: kind, Key: key, Body: b}
}

func (f *folder) apply(kind journal.Kind, key string, body any) {
	f.t.Helper()
	r := f.record(kind, key, body)
	f.records = append(f.records, r)
	if err := f.s.Apply(r); err != nil {
		f.t.Fatalf("apply %s %s: %v", kind, key, err)
	}
}

func (f *folder) pod(name, uid, rv string) {
	f.apply(journal.KindObserved, "pods/ns/"+name, journal.Observed{Resource: "pods", Namespace: "ns", Name: name, UID: uid, ResourceVersion: rv,
		Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running"}})
}

func (f *folder) action(kind journal.Kind, fact journal.ActionFact) {
	f.apply(kind, fact.Key, fact)
}

func TestApplyOrderAndKinds(t *testing.T) {
	f := newFolder(t)
	f.apply(journal.KindTick, "tick", journal.TickFact{})
	if f.s.Seq != 1 || f.s.Now != f.now.UnixNano() {
		t.Fatalf("after a tick: seq %d now %d", f.s.Seq, f.s.Now)
	}

	// A record out of order is refused.
	stale := f.record(journal.KindTick, "tick", journal.TickFact{})
	stale.Seq = 1
	if err := f.s.Apply(stale); err == nil {
		t.Fatal("a record with a sequence already folded was accepted")
	}

	// An unknown kind is an error, never a skip; the state is left as it
	// was, so the same record can be folded by a binary that knows it.
	bad := f.record(journal.Kind(99), "x", journal.TickFact{})
	if err := f.s.Apply(bad); !errors.Is(err, journal.ErrUnknownKind) {
		t.Fatalf("unknown kind: %v, want ErrUnknownKind", err)
	}
	if f.s.Seq != 1 {
		t.Fatalf("a record that failed advanced the state to %d", f.s.Seq)
	}

	// A body that does not decode is an error.
	corrupt := f.record(journal.KindObserved, "pods/ns/a", journal.TickFact{})
	corrupt.Body = []byte{0xff, 0x00}
	if err := f.s.Apply(corrupt); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("corrupt body: %v, want ErrCorrupt", err)
	}
	// So is a body of another kind whose fields do not fit.
	wrong := f.record(journal.KindObserved, "pods/ns/a", journal.Vanished{Resource: "pods", Name: "a", ListResourceVersion: "7"})
	if err := f.s.Apply(wrong); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("a Vanished body folded as Observed: %v", err)
	}

	// Cursors are facts for audit: folded, nothing to project.
	f.seq = f.s.Seq
	f.apply(journal.KindCursor, "cursor/pods", journal.CursorFact{Name: "pods", ResourceVersion: "10"})
}

func TestTicksNeverGoBack(t *testing.T) {
	f := newFolder(t)
	f.apply(journal.KindTick, "tick", journal.TickFact{})
	at := f.s.Now
	f.now = f.now.Add(-time.Minute) // a clock step back on the appending host
	f.apply(journal.KindTick, "tick", journal.TickFact{})
	if f.s.Now != at {
		t.Fatalf("now moved back to %d from %d", f.s.Now, at)
	}
	// Only ticks move time: an observation at a later time does not.
	f.now = f.now.Add(time.Hour)
	f.pod("a", "u1", "5")
	if f.s.Now != at {
		t.Fatalf("an observation moved now to %d", f.s.Now)
	}
}

func TestObjects(t *testing.T) {
	f := newFolder(t)
	f.pod("a", "u1", "5")
	f.apply(journal.KindObserved, "nodes/n1", journal.Observed{Resource: "nodes", Name: "n1", UID: "n", Node: &journal.NodeFacts{Ready: true}})
	f.apply(journal.KindObserved, "statefulsets.apps/ns/web", journal.Observed{Resource: "statefulsets.apps", Namespace: "ns", Name: "web", UID: "s",
		Workload: &journal.WorkloadFacts{Kind: "StatefulSet", UpdateStrategy: "OnDelete"}})
	f.apply(journal.KindObserved, "daemonsets.apps/ns/agent", journal.Observed{Resource: "daemonsets.apps", Namespace: "ns", Name: "agent", UID: "d",
		Workload: &journal.WorkloadFacts{Kind: "DaemonSet"}})
	f.apply(journal.KindObserved, "inplacerollouts.rollbook.dev/ns/r1", journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: "ns", Name: "r1", UID: "r",
		Spec:   []byte(`{"target":{"workloadRef":{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web"}},"strategy":{"maxUnavailable":"25%","partition":2}}`),
		Status: []byte(`{"phase":"Progressing","replicas":3,"updated":1,"updatedReady":1,"unavailable":0,"failed":0,"currentStep":0}`)})
	f.apply(journal.KindObserved, "inplacerollouts.rollbook.dev/ns/r2", journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: "ns", Name: "r2", UID: "r2",
		Spec: []byte(`{"target":{"selector":{"matchLabels":{"app":"web"}}},"strategy":{"maxUnavailable":[1]}}`)})

	if p := f.s.Pods["ns/a"]; p == nil || p.Key() != "ns/a" || p.Pod.NodeName != "n1" {
		t.Fatalf("pod: %+v", p)
	}
	if f.s.Nodes["n1"] == nil || f.s.Workloads["StatefulSet/ns/web"] == nil || f.s.Workloads["DaemonSet/ns/agent"] == nil {
		t.Fatalf("nodes %v, workloads %v", f.s.Nodes, f.s.Workloads)
	}
	r := f.s.Rollouts["ns/r1"]
	if r == nil || r.SpecError != "" || r.Spec.Target.WorkloadRef.Name != "web" || r.Spec.Strategy.MaxUnavailable.StrVal != "25%" ||
		r.Spec.Strategy.Partition.IntVal != 2 || r.Status.Phase != PhaseProgressing || r.Status.Updated != 1 || r.Key() != "ns/r1" {
		t.Fatalf("rollout: %+v", r)
	}
	if r2 := f.s.Rollouts["ns/r2"]; r2 == nil || r2.SpecError == "" {
		t.Fatalf("a spec that does not parse must be kept with its error: %+v", r2)
	}

	// Deletion, by a DELETED event or a Vanished record, forgets the object.
	f.apply(journal.KindObserved, "pods/ns/a", journal.Observed{Resource: "pods", Namespace: "ns", Name: "a", UID: "u1", ResourceVersion: "6", Deleted: true})
	f.apply(journal.KindVanished, "statefulsets.apps/ns/web", journal.Vanished{Resource: "statefulsets.apps", Namespace: "ns", Name: "web", UID: "s"})
	f.apply(journal.KindVanished, "daemonsets.apps/ns/agent", journal.Vanished{Resource: "daemonsets.apps", Namespace: "ns", Name: "agent", UID: "d"})
	f.apply(journal.KindVanished, "nodes/n1", journal.Vanished{Resource: "nodes", Name: "n1", UID: "n"})
	f.apply(journal.KindVanished, "inplacerollouts.rollbook.dev/ns/r1", journal.Vanished{Resource: "inplacerollouts.rollbook.dev", Namespace: "ns", Name: "r1", UID: "r"})
	if len(f.s.Pods)+len(f.s.Workloads)+len(f.s.Nodes) != 0 || f.s.Rollouts["ns/r1"] != nil {
		t.Fatalf("deleted objects remain: pods %v workloads %v nodes %v rollouts %v", f.s.Pods, f.s.Workloads, f.s.Nodes, f.s.Rollouts)
	}
}

func TestActionsInFlight(t *testing.T) {
	f := newFolder(t)
	f.pod("a", "u1", "5")
	gate := journal.ActionFact{Key: "gate/ns/a/u1/rev1", Kind: "gate", Rollout: "ns/r1", Pod: "ns/a", UID: "u1", Revision: "rev1"}

	// Intended: in flight.
	f.action(journal.KindActionIntended, gate)
	p := f.s.Pending["ns/a"]
	if p == nil || p.Key != gate.Key || p.Kind != "gate" || p.Succeeded || p.IntentSeq != f.seq {
		t.Fatalf("pending after intent: %+v", p)
	}
	// Succeeded: still in flight until the watch shows the result.
	gate.ResultVersion = "9"
	f.action(journal.KindActionSucceeded, gate)
	if p := f.s.Pending["ns/a"]; p == nil || !p.Succeeded || p.ResultVersion != "9" {
		t.Fatalf("pending after success: %+v", p)
	}
	f.pod("a", "u1", "8") // an older version: not yet
	if f.s.Pending["ns/a"] == nil {
		t.Fatal("settled by a version older than the result")
	}
	f.pod("a", "u1", "10") // a later one (the result may be coalesced)
	if f.s.Pending["ns/a"] != nil {
		t.Fatal("still pending after the watch showed the result")
	}

	// The watch may show the result before the outcome is journaled.
	patch := journal.ActionFact{Key: "patch/ns/a/u1/rev1", Kind: "patch", Rollout: "ns/r1", Pod: "ns/a", UID: "u1", Revision: "rev1"}
	f.action(journal.KindActionIntended, patch)
	f.pod("a", "u1", "11")
	if f.s.Pending["ns/a"] == nil {
		t.Fatal("an intent without an outcome was settled by the watch")
	}
	patch.ResultVersion = "11"
	f.action(journal.KindActionSucceeded, patch)
	if f.s.Pending["ns/a"] != nil {
		t.Fatal("a success already seen on the watch left the action pending")
	}

	// Failures: counted per key, end the action, and a success clears them.
	resize := journal.ActionFact{Key: "resize/ns/a/u1/rev1", Kind: "resize", Rollout: "ns/r1", Pod: "ns/a", UID: "u1", Revision: "rev1"}
	for i := 1; i <= 2; i++ {
		f.action(journal.KindActionIntended, resize)
		failed := resize
		failed.Class, failed.Error = journal.ClassThrottled, "429"
		f.action(journal.KindActionFailed, failed)
		if f.s.Pending["ns/a"] != nil {
			t.Fatal("a failed action is still pending")
		}
		if fl := f.s.Failures[resize.Key]; fl == nil || fl.Count != i || fl.Class != journal.ClassThrottled || fl.Error != "429" || fl.LastAt != f.now.UnixNano() {
			t.Fatalf("failure %d: %+v", i, fl)
		}
	}
	f.action(journal.KindActionIntended, resize)
	resize.ResultVersion = "12"
	f.action(journal.KindActionSucceeded, resize)
	if f.s.Failures[resize.Key] != nil {
		t.Fatal("a success did not clear the key's failures")
	}

	// An outcome for another key leaves the pending action alone.
	ungate := journal.ActionFact{Key: "ungate/ns/a/u1/rev1", Kind: "ungate", Rollout: "ns/r1", Pod: "ns/a", UID: "u1", Revision: "rev1"}
	f.action(journal.KindActionIntended, ungate)
	other := gate
	other.Class = journal.ClassConflict
	f.action(journal.KindActionFailed, other)
	if p := f.s.Pending["ns/a"]; p == nil || p.Key != ungate.Key {
		t.Fatalf("an outcome of another key touched the pending action: %+v", p)
	}
	// The pod deleted: nothing is pending on it any more.
	f.apply(journal.KindObserved, "pods/ns/a", journal.Observed{Resource: "pods", Namespace: "ns", Name: "a", UID: "u1", ResourceVersion: "13", Deleted: true})
	if f.s.Pending["ns/a"] != nil {
		t.Fatal("an action on a deleted pod is still pending")
	}

	// An eviction answers with no version: the recreate stays in flight
	// until the watch shows the pod terminating (or replaced, or gone), so
	// no plan evicts it twice; and its replacement is remembered.
	f.pod("b", "u2", "20")
	del := journal.ActionFact{Key: "recreate/ns/b/u2/rev1", Kind: "recreate", Rollout: "ns/r1", Pod: "ns/b", UID: "u2", Revision: "rev1"}
	f.action(journal.KindActionIntended, del)
	f.action(journal.KindActionSucceeded, del)
	if f.s.Pending["ns/b"] == nil {
		t.Fatal("an eviction that succeeded is not in flight until the pod is seen terminating")
	}
	f.apply(journal.KindObserved, "pods/ns/b", journal.Observed{Resource: "pods", Namespace: "ns", Name: "b", UID: "u2", ResourceVersion: "21", Deleting: 1})
	if f.s.Pending["ns/b"] != nil {
		t.Fatal("the recreate is still in flight after the pod was seen terminating")
	}
	if rc := f.s.Recreated["ns/b"]; rc.UID != "u2" || rc.Revision != "rev1" || rc.Rollout != "ns/r1" {
		t.Fatalf("recreation not remembered: %+v", rc)
	}
	// A success with no version on anything else ends at once.
	rs := journal.ActionFact{Key: "resize/ns/b/u2/rev1", Kind: "resize", Rollout: "ns/r1", Pod: "ns/b", UID: "u2"}
	f.action(journal.KindActionIntended, rs)
	f.action(journal.KindActionSucceeded, rs)
	if f.s.Pending["ns/b"] != nil {
		t.Fatal("a success without a result version left the action pending")
	}

	// Rollout actions are pending under "rollout:<key>" and settle on the rollout.
	f.apply(journal.KindObserved, "inplacerollouts.rollbook.dev/ns/r1", journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: "ns", Name: "r1", UID: "r", ResourceVersion: "30", Spec: []byte(`{}`)})
	st := journal.ActionFact{Key: "status/ns/r1/r", Kind: "status", Rollout: "ns/r1"}
	f.action(journal.KindActionIntended, st)
	if PendingKey(st) != "rollout:ns/r1" || f.s.Pending["rollout:ns/r1"] == nil {
		t.Fatalf("status not pending under its rollout: %v", f.s.Pending)
	}
	st.ResultVersion = "31"
	f.action(journal.KindActionSucceeded, st)
	f.apply(journal.KindObserved, "inplacerollouts.rollbook.dev/ns/r1", journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: "ns", Name: "r1", UID: "r", ResourceVersion: "31", Spec: []byte(`{}`)})
	if f.s.Pending["rollout:ns/r1"] != nil {
		t.Fatal("status still pending after the rollout showed it")
	}

	// Events are fire and forget: emitted once, never pending.
	ev := journal.ActionFact{Key: "event/ns/r1/Succeeded/revision x", Kind: "event", Rollout: "ns/r1"}
	f.action(journal.KindActionIntended, ev)
	if !f.s.Emitted[ev.Key] || f.s.Pending["rollout:ns/r1"] != nil {
		t.Fatalf("event: emitted %v pending %v", f.s.Emitted, f.s.Pending)
	}
}

// TestFoldIsDeterministic: folding the same records gives equal states.
func TestFoldIsDeterministic(t *testing.T) {
	f := newFolder(t)
	f.apply(journal.KindTick, "tick", journal.TickFact{})
	for _, n := range []string{"a", "b", "c"} {
		f.pod(n, "u-"+n, "1")
		g := journal.ActionFact{Key: "gate/ns/" + n, Kind: "gate", Pod: "ns/" + n, UID: "u-" + n}
		f.action(journal.KindActionIntended, g)
		g.Class = journal.ClassConflict
		f.action(journal.KindActionFailed, g)
	}
	again := New()
	for _, r := range f.records {
		if err := again.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(f.s, again) {
		t.Fatal("two folds of the same records differ")
	}
}
