package projections

// dropped: the pod conditions the kubelet and the scheduler keep that no
// plan, status or view reads; factsOf leaves them out, with the pod IP. A
// fleet's pods carry four of them, and the fold would otherwise hold them
// for every pod (a fifth of a pod's memory in the fold). Ready, Rollbook's
// gate, the resize conditions and every condition a hook controller sets
// are kept.
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
