package projections

import (
	"testing"

	"rollbook.dev/rollbook/journal"
)

// A node's heartbeats change its object but none of its facts; they must
// not make the planner plan everything again, while a label change (what
// scatter reads) must.
func TestNodeHeartbeatsTouchNothing(t *testing.T) {
	f := newFolder(t)
	f.s.Track()
	node := func(rv string, labels map[string]string, ready bool) {
		f.apply(journal.KindObserved, "nodes/n1", journal.Observed{Resource: "nodes", Name: "n1", UID: "u1", ResourceVersion: rv,
			Node: &journal.NodeFacts{Ready: ready, Labels: labels}})
	}
	zone := map[string]string{"topology.kubernetes.io/zone": "a"}
	node("1", zone, true)
	if !f.s.TakeTouched().All {
		t.Fatal("a new node did not touch everything")
	}
	node("2", map[string]string{"topology.kubernetes.io/zone": "a"}, true)
	if tc := f.s.TakeTouched(); !tc.Empty() {
		t.Fatalf("a heartbeat (same labels, same readiness) touched %+v", tc)
	}
	if f.s.Nodes["n1"].ResourceVersion != "2" {
		t.Fatalf("the heartbeat was not folded: node at version %s", f.s.Nodes["n1"].ResourceVersion)
	}
	node("3", map[string]string{"topology.kubernetes.io/zone": "b"}, true)
	if !f.s.TakeTouched().All {
		t.Fatal("a zone label change did not touch everything")
	}
	node("4", map[string]string{"topology.kubernetes.io/zone": "b"}, false)
	if !f.s.TakeTouched().All {
		t.Fatal("a node going NotReady did not touch everything")
	}
	f.apply(journal.KindObserved, "nodes/n1", journal.Observed{Resource: "nodes", Name: "n1", UID: "u2", ResourceVersion: "5",
		Node: &journal.NodeFacts{Labels: map[string]string{"topology.kubernetes.io/zone": "b"}}})
	if !f.s.TakeTouched().All {
		t.Fatal("a node recreated under the same name did not touch everything")
	}
}
