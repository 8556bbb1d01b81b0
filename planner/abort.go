package planner

import (
	"rollbook.dev/rollbook/projections"
)

// aborted plans a rollout whose spec.abort is set. It claims no pod, so
// Plan releases every pod it gated, a pod patched and not yet verified
// included, exactly as for a deleted rollout ("released: no rollout drives
// this pod"); pods keep the containers they run. Unlike a deleted rollout
// it stays, with its status and history: the counts are those last
// written, the phase is Failed with Aborted=True, and unsetting
// spec.abort plans it again from where its pods are. Its pods are free
// for a younger rollout to claim.
func (p *planning) aborted(r *projections.Rollout) {
	st := r.Status
	st.ObservedGeneration = r.Generation
	st.TraceID, st.TraceParent = TraceID(r.UID), RolloutTraceParent(r.UID)
	st.StepPausedAt = nil
	st.Phase = projections.PhaseFailed
	conds := newConditions(r.Status.Conditions, p.now)
	conds.set("Aborted", "True", "SpecAbort", "spec.abort is true: the rollout stopped and released every gate; updated pods keep their new containers. Unset spec.abort to go on (kubectl rollbook resume)")
	conds.set("Paused", "False", "Aborted", "")
	p.finishStatus(r, &st, conds)
}
