package projections

import (
	"reflect"
	"testing"

	"rollbook.dev/rollbook/journal"
)

// The fold keeps of a pod what planning reads: Ready, Rollbook's gate, the
// resize conditions and a hook controller's own conditions, in their
// order; not the kubelet's and scheduler's other conditions, the pod IP or
// the object hash, which the journal's record keeps.
func TestFoldKeepsWhatPlanningReads(t *testing.T) {
	f := newFolder(t)
	cond := func(typ string) journal.Condition {
		return journal.Condition{Type: typ, Status: "True", LastTransition: 7}
	}
	obs := journal.Observed{Resource: "pods", Namespace: "ns", Name: "a", UID: "u1", ResourceVersion: "5", ObjectHash: []byte("0123456789abcdef0123456789abcdef"),
		Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running", PodIP: "10.0.0.7", Conditions: []journal.Condition{
			cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled"),
			cond("rollbook.dev/InPlaceUpdateReady"), cond("PodResizeInProgress"), cond("example.com/Drained"),
		}}}
	f.apply(journal.KindObserved, "pods/ns/a", obs)
	p := f.s.Pods["ns/a"]
	want := []journal.Condition{cond("Ready"), cond("rollbook.dev/InPlaceUpdateReady"), cond("PodResizeInProgress"), cond("example.com/Drained")}
	if kept := p.Pod.PodFacts(); !reflect.DeepEqual(kept.Conditions, want) {
		t.Errorf("conditions kept: %+v, want %+v", kept.Conditions, want)
	}
	if kept := p.Pod.PodFacts(); kept.PodIP != "" || kept.NodeName != "n1" || kept.Phase != "Running" {
		t.Errorf("pod kept: IP %q, node %q, phase %q", kept.PodIP, kept.NodeName, kept.Phase)
	}
	for _, typ := range []string{"Ready", "rollbook.dev/InPlaceUpdateReady", "example.com/Drained"} {
		if !KeepsCondition(typ) {
			t.Errorf("KeepsCondition(%q) = false", typ)
		}
	}
	if KeepsCondition("ContainersReady") {
		t.Error("KeepsCondition(ContainersReady) = true")
	}
	// The record itself is untouched: audit reads it whole.
	var back journal.Observed
	if err := f.records[len(f.records)-1].Decode(&back); err != nil || len(back.Pod.Conditions) != 8 || back.Pod.PodIP != "10.0.0.7" || len(back.ObjectHash) != 32 {
		t.Errorf("the record lost what the fold dropped: %v %+v", err, back.Pod)
	}
}
