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
type keptPlans struct {
	ctx  keptContext
	pods map[string]keptPlan // by value: one allocation less per pod
	// round counts the classifications; an entry is valid only if the
	// last one saw it: a pod that left the rollout's pods and came back
	// may have been touched while it was away.
	round int
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

type keptPlan struct {
	pod   *projections.Pod
	plan  *podPlan // nil: not yet scheduled
	round int
}

// keptPlans returns the classifications the rollout being planned may
// reuse, and keeps them with its new unit; nil outside the incremental
// planner's units.
func (p *planning) keptPlans(rp *rolloutPlan) *keptPlans {
	if p.unit == nil {
		return nil
	}
	ctx := contextOf(rp.r, rp.t, rp.rollingBack)
	var k *keptPlans
	if old := p.inc.units[rp.r.Key()]; old != nil && old.kept != nil && p.touched != nil &&
		!p.touched.Namespaces[rp.r.Namespace] && old.kept.ctx == ctx {
		k = old.kept
	} else {
		k = &keptPlans{ctx: ctx, pods: map[string]keptPlan{}}
	}
	k.round++
	p.unit.kept = k
	return k
}

// get returns pod's classification from the last plan, if still valid.
func (k *keptPlans) get(pod *projections.Pod, touched *projections.Touched, now int64) (*podPlan, bool) {
	if k == nil || touched == nil {
		return nil, false
	}
	key := pod.Key()
	e, ok := k.pods[key]
	if !ok || e.pod != pod || e.round != k.round-1 || touched.Pods[key] {
		return nil, false
	}
	if pp := e.plan; pp != nil && (pp.timed || (pp.until != 0 && now >= pp.until)) {
		return nil, false
	}
	e.round = k.round
	k.pods[key] = e
	return e.plan, true
}

// put keeps pod's new classification.
func (k *keptPlans) put(pod *projections.Pod, pp *podPlan) {
	if k == nil {
		return
	}
	k.pods[pod.Key()] = keptPlan{pod: pod, plan: pp, round: k.round}
}

// trim drops entries the last classification did not see, once they
// outnumber the rollout's pods: pods deleted or gone to other rollouts.
func (k *keptPlans) trim(mine int) {
	if k == nil || len(k.pods) <= 2*mine+64 {
		return
	}
	for key, e := range k.pods {
		if e.round != k.round {
			delete(k.pods, key)
		}
	}
}
