package planner

import (
	"slices"
	"strings"

	"rollbook.dev/rollbook/projections"
)

// A rollout is replanned whenever a record touches one of its pods, and
// while it rolls that is nearly every plan. Classifying its pods again is
// already avoided (kept.go); this file avoids looking at them at all. A
// rollout whose last plan was simple (no pod left to an older rollout,
// not rolling back) keeps what each pod added to that
// plan: its classification and its counts, as bits (podCount). The next
// plan looks again only at the pods that changed since (touched, their
// claimant changed, their classification's deadline came, or a failure
// on record) and adds up the bits of all, which is a scan of a small
// array rather than a map look-up or two per pod; only the pods under
// way are driven, and only the rare ones (failed, blocked, at a hook...)
// are read for their words. count and this plan share counted and tally,
// so the two add up alike; anything not simple is planned from all its
// pods (rolloutPods), and the tests hold both to Plan.

// podCount is what one pod adds to its rollout's tally, and what drive
// does with it, as bits.
type podCount uint16

const (
	countUnscheduled podCount = 1 << iota // not scheduled yet: unavailable, not planned
	countStarted
	countUnavailable
	countNoGate
	countDone
	countUpdated
	countUpdatedReady
	// countIdle: a candidate to start (idle, nothing in flight or in this
	// plan); countActive: under way, drive acts on it.
	countIdle
	countActive
	// countTimed: its classification has a deadline (podPlan.until, timed).
	countTimed
	// countFailed: an action on it failed and has not succeeded since; it
	// is counted again at every plan, for allowed's backoff and wake-ups.
	countFailed
	// countRare: failed, blocked, skipped, diverged, recreating, at a
	// hook, or stalled: the tally needs its words, in pod order
	// (countRare).
	countRare
	// countWaiting: idle, but not a candidate in this plan, as an action
	// of another kind is in flight or planned for it (an initial ungate):
	// work left, which a phase that ends the rollout must wait for.
	countWaiting
)

// counted returns what pp adds to its rollout's tally. Invariant: a pod
// whose gate, patch or recreate is in flight has started and is
// unavailable although the watch does not show it yet, and a patched pod
// not yet verified is unavailable even while the kubelet still reports it
// ready (no gate, or skipDrain): planning again before results arrive
// never starts more pods than the budget.
func (p *planning) counted(pp *podPlan) podCount {
	if pp == nil {
		return countUnscheduled
	}
	var c podCount
	key := pp.pod.Key()
	pending := p.s.Pending[key]
	inFlight := pending != nil && (pp.stage == stageIdle || pp.stage == stageRecreate) &&
		(pending.Kind == string(Gate) || pending.Kind == string(Patch) || pending.Kind == string(Recreate))
	if inFlight {
		c |= countStarted
	}
	if !pp.ready || pp.gated || pp.pod.Deleting != 0 || inFlight || pp.stage.updating() || pp.restartPending {
		c |= countUnavailable
	}
	if !pp.hasGate {
		c |= countNoGate
	}
	switch pp.stage {
	case stageDone:
		c |= countDone | countUpdated
		if pp.ready {
			c |= countUpdatedReady
		}
	case stageVerified, stageVerifying:
		c |= countUpdated | countStarted
	case stagePostHook:
		c |= countUpdated | countStarted
		if pp.ready {
			c |= countUpdatedReady
		}
	case stageGated, stageResize:
		c |= countStarted
	case stageFailed:
		c |= countStarted | countRare
	case stageIdle:
	default: // recreate, blocked, skipped, diverged, untouched
		c |= countRare
	}
	if s := pp.hookState(); s == hookWaiting || s == hookTimedOut {
		c |= countRare
	}
	if len(p.s.Failures) > 0 && p.failedPod(key) {
		c |= countFailed
		if p.stalled(pp) != "" {
			c |= countRare
		}
	}
	switch {
	case p.busy[key] || pending != nil:
		if pp.stage == stageIdle && !inFlight {
			c |= countWaiting
		}
	case pp.stage == stageIdle:
		c |= countIdle
	case pp.stage != stageDone || pp.hookState() == hookTimedOut:
		c |= countActive
	}
	if pp.timed || pp.until() != 0 {
		c |= countTimed
	}
	return c
}

// add counts the bits of k pods counted c.
func (n *tally) add(c podCount, st *projections.RolloutStatus, k int) {
	if c&countStarted != 0 {
		n.started += k
	}
	if c&countUnavailable != 0 {
		n.unavailable += k
	}
	if c&countNoGate != 0 {
		n.noGate += k
	}
	if c&countDone != 0 {
		n.done += k
	}
	if c&countUpdated != 0 {
		st.Updated += int32(k)
	}
	if c&countUpdatedReady != 0 {
		st.UpdatedReady += int32(k)
	}
	if c&countWaiting != 0 {
		n.waiting += k
	}
}

// simple: the rollout's next plan may start from this one (see above).
func (rp *rolloutPlan) simple() bool {
	return len(rp.conflicts) == 0 && !rp.rollingBack && len(rp.all) == len(rp.mine)
}

// startsNext: u's plan is one the rollout's next plan may start from.
func (u *unit) startsNext() bool {
	return u.simple && u.kept != nil && len(u.plans) == len(u.pods) && len(u.counts) == len(u.pods)
}

// claimsDelta is what a plan from the last one changed in its rollout's
// claims, for replan to pass on without comparing every claim.
type claimsDelta struct{ left, joined []string }

// podChange is a pod the plan looks at again.
type podChange struct {
	key string
	at  int  // its place in the last plan's pods, or where it goes
	was bool // among the last plan's pods
	pod *projections.Pod
	pp  *podPlan // nil and pod set: not scheduled
	c   podCount
}

// rolloutFast plans rollout r's pods from its last plan and the pods
// that changed since, as rolloutPods would from all of them. It reports
// false, having changed nothing, when the last plan was not simple or
// what changed makes this one not simple; rolloutPods plans it then.
func (p *planning) rolloutFast(r *projections.Rollout, t target, st *projections.RolloutStatus, conds *conditions) bool {
	u, rk := p.unit, r.Key()
	if u == nil || p.touched == nil || p.touched.Namespaces[r.Namespace] {
		return false
	}
	old := p.inc.units[rk]
	if old == nil || !old.startsNext() {
		return false
	}
	// As enterRevision will find it: nothing before it sets RollingBack.
	rollingBack := r.Spec.Strategy.OnFailure == "Rollback" && r.Status.TargetRevision == t.rev && conds.is("RollingBack")
	ctx := contextOf(r, t, rollingBack)
	// The same spec (in the context) selects as the last plan did.
	if rollingBack || old.kept.ctx != ctx || old.ownerUID != ctx.owner || ctx.owner == "" && old.selector == nil {
		return false
	}
	changes, ok := p.changedPods(r, t, old)
	if !ok {
		return false
	}
	pods, plans, counts, cd := spliced(old, changes)
	if t.workload == nil && missingContainer(r.Spec, pods) != "" {
		return false // selectPods says what is wrong
	}

	p.inc.FromLast++
	if t.workload != nil && conds.has("RevisionObserved") {
		conds.set("RevisionObserved", "True", "Observed", "")
	}
	rp := newRolloutPlan(r, t, st, conds)
	conds.set("Conflict", "False", "NoConflict", "")
	p.enterRevision(rp)
	me := claimantOf(rk)
	for _, ch := range changes {
		if ch.pod != nil && p.inc.claims[ch.key] != me {
			p.inc.claims[ch.key] = me
		}
	}
	old.kept.keep(pods, plans)
	u.pods, u.claims, u.claimsSelected, u.kept = pods, nil, true, old.kept
	u.ownerUID, u.selector, u.selKey = old.ownerUID, old.selector, old.selKey
	rp.mine, rp.all, rp.counts = pods, plans, counts
	p.tally(rp)
	if p.act(rp, p.driveKept) {
		u.plans, u.counts, u.simple, u.claimsDelta = plans, counts, rp.simple(), cd
	} else {
		// It let go of its pods: replan compares the claims as usual.
		u.claims, u.claimsSelected = podKeys(pods), false
	}
	return true
}

// changedPods returns the pods of r's namespace to look at again, sorted
// by key, each classified and counted if r selects it now; false if one
// makes the plan not simple (an older rollout claims it).
func (p *planning) changedPods(r *projections.Rollout, t target, old *unit) ([]podChange, bool) {
	prefix := r.Namespace + "/"
	var keys []string
	for k := range p.touched.Pods {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	for k := range p.changed {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	for i, c := range old.counts {
		if c&(countFailed|countTimed) == 0 {
			continue // most pods: their classification is not read
		}
		if pp := old.plans[i]; c&countFailed != 0 || pp.timed || pp.until() != 0 && p.now >= pp.until() {
			keys = append(keys, old.pods[i].Key())
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	match, problem := matcher(r, t)
	if problem != "" {
		return nil, false
	}
	cl := &rolloutPlan{r: r, t: t, spec: r.Spec, key: r.Key()}
	me := claimantOf(cl.key)
	changes := make([]podChange, 0, len(keys))
	for _, k := range keys {
		at, was := old.find(k)
		ch := podChange{key: k, at: at, was: was}
		if pod := p.s.Pods[k]; pod != nil && match(pod) {
			if owner, ok := p.inc.claims[k]; ok && owner != me && p.processed[owner.Value()] {
				return nil, false // left to an older rollout
			}
			ch.pod, ch.pp = pod, p.classifyPod(cl, pod)
			ch.c = p.counted(ch.pp)
		} else if !was {
			continue // neither then nor now
		}
		changes = append(changes, ch)
	}
	return changes, true
}

// spliced returns the last plan's pods with the changes made: each
// changed pod replaced, dropped or put in its place.
//
// When no pod joined or left, the last plan's slices are changed in place
// rather than copied (copying three slices of a thousand was a fifth of
// such a plan): the unit made from them replaces the last one, and a plan
// that falls back to selecting afresh reads of the last unit only its
// pods, and only those no record touched, which are the same.
func spliced(old *unit, changes []podChange) (pods []*projections.Pod, plans []*podPlan, counts []podCount, cd *claimsDelta) {
	cd = &claimsDelta{}
	same := true
	for _, ch := range changes {
		if ch.was != (ch.pod != nil) {
			same = false
		}
	}
	if same {
		for _, ch := range changes {
			old.pods[ch.at], old.plans[ch.at], old.counts[ch.at] = ch.pod, ch.pp, ch.c
		}
		return old.pods, old.plans, old.counts, cd
	}
	size := len(old.pods) + len(changes)
	pods, plans, counts = make([]*projections.Pod, 0, size), make([]*podPlan, 0, size), make([]podCount, 0, size)
	from := 0
	for _, ch := range changes {
		pods = append(pods, old.pods[from:ch.at]...)
		plans, counts = append(plans, old.plans[from:ch.at]...), append(counts, old.counts[from:ch.at]...)
		from = ch.at
		if ch.was {
			from++
		}
		switch {
		case ch.pod != nil:
			pods, plans, counts = append(pods, ch.pod), append(plans, ch.pp), append(counts, ch.c)
			if !ch.was {
				cd.joined = append(cd.joined, ch.key)
			}
		case ch.was:
			cd.left = append(cd.left, ch.key)
		}
	}
	pods = append(pods, old.pods[from:]...)
	plans, counts = append(plans, old.plans[from:]...), append(counts, old.counts[from:]...)
	return pods, plans, counts, cd
}

// driveKept is drive over the bits of a plan made from the last one:
// only the pods under way are driven; the idle ones are the candidates,
// listed only when collect.
func (p *planning) driveKept(rp *rolloutPlan, collect bool) (candidates []*podPlan, n int) {
	if collect {
		for _, c := range rp.counts {
			if c&(countActive|countIdle) != 0 {
				n++
			}
		}
		candidates = make([]*podPlan, 0, n)
		n = 0
	}
	for i, c := range rp.counts {
		switch {
		case c&countActive != 0:
			if !p.drivePod(rp, rp.all[i]) {
				continue
			}
		case c&countIdle == 0:
			continue
		}
		n++
		if collect {
			candidates = append(candidates, rp.all[i])
		}
	}
	return candidates, n
}
