package projections

import (
	"fmt"
	"reflect"
	"testing"

	"rollbook.dev/rollbook/journal"
)

// TestPodsShareConditionTexts: pods whose conditions read the same (type,
// status, reason, message) hold one text for each, whatever their own
// transition times; a pod whose condition says something else holds its
// own; and a checkpoint's load shares them again.
func TestPodsShareConditionTexts(t *testing.T) {
	f := newFolder(t)
	conds := func(i int, msg string) []journal.Condition {
		return []journal.Condition{
			{Type: "Ready", Status: "True", LastTransition: int64(100 + i)},
			{Type: "PodScheduled", Status: "True", LastTransition: 3}, // dropped
			{Type: "rollbook.dev/InPlaceUpdateReady", Status: "True", Reason: "Ready", Message: msg, LastTransition: int64(200 + i)},
		}
	}
	for i := range 5 {
		msg := "initial: no update in progress"
		if i == 4 {
			msg = "released: updated to r-2"
		}
		name := fmt.Sprint("web-", i)
		f.apply(journal.KindObserved, "pods/ns/"+name, journal.Observed{Resource: "pods", Namespace: "ns", Name: name, UID: "u" + name, ResourceVersion: fmt.Sprint(10 + i),
			Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running", Conditions: conds(i, msg)}})
	}
	check := func(s *State, when string) {
		t.Helper()
		first := s.Pods["ns/web-0"].Pod.Conditions
		for i := range 5 {
			c := s.Pods[fmt.Sprint("ns/web-", i)].Pod.Conditions
			if len(c) != 2 || c[0].Type() != "Ready" || c[1].Type() != "rollbook.dev/InPlaceUpdateReady" || c[0].LastTransition != int64(100+i) || c[1].LastTransition != int64(200+i) {
				t.Fatalf("%s: web-%d keeps %+v", when, i, s.Pods[fmt.Sprint("ns/web-", i)].Pod.PodFacts().Conditions)
			}
			if c[0].text != first[0].text {
				t.Errorf("%s: web-%d's Ready holds a text of its own", when, i)
			}
			if shared := c[1].text == first[1].text; shared != (i < 4) {
				t.Errorf("%s: web-%d's gate shares the first pod's text: %v", when, i, shared)
			}
		}
	}
	check(f.s, "folded")
	back := throughCheckpoint(t, f.s)
	check(back.State, "from a checkpoint")
}

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
