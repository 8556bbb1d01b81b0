package projections

import "rollbook.dev/rollbook/journal"

// dropped: the pod conditions the kubelet and the scheduler keep that no
// plan, status or view reads. A fleet's pods carry four of them, and the
// fold would otherwise hold them for every pod (a fifth of a pod's memory
// in the fold). Ready, Rollbook's gate, the resize conditions and every
// condition a hook controller sets are kept.
func dropped(typ string) bool {
	switch typ {
	case "PodScheduled", "Initialized", "ContainersReady", "PodReadyToStartContainers":
		return true
	}
	return false
}

// KeepsCondition says whether the fold keeps a pod's conditions of this
// type: a hook that waits for one it drops would wait forever, so the
// planner refuses it (planner.hookProblem).
func KeepsCondition(typ string) bool { return !dropped(typ) }

// slim drops from a pod's facts what the fold's readers never read: the
// pod IP and the dropped conditions (the journal keeps both, for audit;
// the object hash a Pod does not hold). The fold and a checkpoint's load
// both call it, so a plan reads the same pods either way.
func slim(f *journal.PodFacts) {
	if f == nil {
		return
	}
	f.PodIP = ""
	n := 0
	for _, c := range f.Conditions {
		if !dropped(c.Type) {
			n++
		}
	}
	switch n {
	case len(f.Conditions):
		return
	case 0:
		f.Conditions = nil // as a checkpoint reads none back
		return
	}
	// A new array: shortening the old one in place would keep it whole.
	kept := make([]journal.Condition, 0, n)
	for _, c := range f.Conditions {
		if !dropped(c.Type) {
			kept = append(kept, c)
		}
	}
	f.Conditions = kept
}
