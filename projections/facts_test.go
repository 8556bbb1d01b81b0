package projections

import (
	"fmt"
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
	b, err := journal.EncodeBody(&Books{State: f.s})
	if err != nil {
		t.Fatal(err)
	}
	var back Books
	if err := journal.DecodeCheckpoint(b, &back); err != nil {
		t.Fatal(err)
	}
	check(back.State, "from a checkpoint")
}
