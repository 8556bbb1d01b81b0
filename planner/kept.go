package planner

import "rollbook.dev/rollbook/projections"

// keptPlans are one rollout's pod classifications from its last plan,
// reused while nothing they were derived from has changed: a rollout of
// 10,000 pods whose records touched ten is classified ten pods at a time.
//
// A classification is a function of the pod (its object: a new pointer
// for each version the fold takes), of the records about it (pending and
// recreated actions: they touch the pod), of the rollout's spec, target
// and rollback state (the context), of the namespace's ControllerRevisions
// (a change touches the namespace) and, for a pod at a timeout or a hook's
// wait, of the plan's time (podPlan.until and timed).
//
// They are the last classification's own lists, the rolloutPlan's mine
// and all; without conflicts the rollout's unit keeps the same lists
// anyway (unit.pods and plans), so keeping them costs no memory per pod.
// (A map by pod key cost ~85 bytes a pod of a rollout under way.)
type keptPlans struct {
	ctx keptContext
	// pods, sorted by key, and each one's classification (nil: not yet
	// scheduled).
	pods  []*projections.Pod
	plans []*podPlan
	// next is where get looks first: a classification reads the pods in
	// key order, as the last one kept them.
	next int
}

// keptContext is what the rollout contributes to its pods' classification.
type keptContext struct {
	spec        string // the spec as observed (JSON)
	rev, label  string
	owner       string // the workload's UID
	rollingBack bool
}

// contextOf is what rollout r with target t contributes to its pods'
// classification; a kept classification is reused only under the same.
func contextOf(r *projections.Rollout, t target, rollingBack bool) keptContext {
	ctx := keptContext{spec: string(r.Observed.Spec), rev: t.rev, label: t.label, rollingBack: rollingBack}
	if t.workload != nil {
		ctx.owner = t.workload.UID
	}
	return ctx
}

// keptPlans returns the classifications the rollout being planned may
// reuse (nil: none), and starts the ones its new unit keeps (keep);
// nil outside the incremental planner's units.
func (p *planning) keptPlans(rp *rolloutPlan) *keptPlans {
	if p.unit == nil {
		return nil
	}
	ctx := contextOf(rp.r, rp.t, rp.rollingBack)
	p.unit.kept = &keptPlans{ctx: ctx}
	if old := p.inc.units[rp.r.Key()]; old != nil && old.kept != nil && p.touched != nil &&
		!p.touched.Namespaces[rp.r.Namespace] && old.kept.ctx == ctx {
		old.kept.next = 0
		return old.kept
	}
	return nil
}

// keep makes pods and their classifications plans the ones the next plan
// may reuse.
func (k *keptPlans) keep(pods []*projections.Pod, plans []*podPlan) {
	if k != nil {
		k.pods, k.plans, k.next = pods, plans, 0
	}
}

// get returns pod's classification from the last plan, if still valid.
// Pods asked in key order are found in one pass; a pod asked out of order
// is not found, and only classified again.
func (k *keptPlans) get(pod *projections.Pod, touched *projections.Touched, now int64) (*podPlan, bool) {
	if k == nil || touched == nil {
		return nil, false
	}
	key := pod.Key()
	for k.next < len(k.pods) && k.pods[k.next] != pod && k.pods[k.next].Key() < key {
		k.next++
	}
	if k.next == len(k.pods) || k.pods[k.next] != pod {
		return nil, false // a new version, or not classified last time
	}
	pp := k.plans[k.next]
	k.next++
	if touched.Pods[key] || pp == resting {
		return nil, false
	}
	if pp != nil && (pp.timed || (pp.until() != 0 && now >= pp.until())) {
		return nil, false
	}
	return pp, true
}

// A rollout that is over is still planned again whenever a record touches
// one of its pods (a status, a restart): every plan, on a fleet at rest
// whose rollout stays, as a workload's does. Planned afresh, a finished
// rollout of 100,000 pods classified them all each time, ~150 ms a plan
// (BENCHMARKS.md §1, "A state's fleet-wide part held once"); keeping every
// classification, as a rollout under way does, cost ~80 bytes a pod for
// as long as the rollout stays. It keeps its plan (delta.go), and for the
// pods that are done and only add their done counts to the tally, resting
// instead of their classifications.

// resting stands for the classification of a pod of a rollout that is
// over which adds only restingCounts to the tally. A plan made from the
// last one reads a pod's classification only when its counts say it is
// under way, idle, rare, timed or failed, and a plan made afresh
// classifies the pod again (keptPlans.get): nothing reads or writes
// through it, so every planner may share it (it is compared by identity).
var resting = &podPlan{}

// restingCounts are what a done pod may add to the tally and still rest.
const restingCounts = countDone | countUpdated | countUpdatedReady | countNoGate | countUnavailable

// rest is what a rollout that is over keeps for its next plan: its plan,
// with resting for each done pod's classification; nothing when its next
// plan cannot start from this one.
func (u *unit) rest() {
	if !u.startsNext() {
		u.kept, u.plans, u.counts, u.simple = nil, nil, nil, false
		return
	}
	for i, c := range u.counts {
		if c&countDone != 0 && c&^restingCounts == 0 {
			u.plans[i] = resting
		}
	}
}
