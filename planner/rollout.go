package planner

import (
	"fmt"
	"slices"

	"rollbook.dev/rollbook/projections"
)

// A rollout's pods are planned in stages that pass values, each a small
// function: select (claim the pods), classify (where each pod stands),
// count (what that adds up to, and which conditions it sets), budget (how
// many pods may start now), act (drive the pods under way, then start new
// ones in order) and phase (the status). rolloutPods runs them in order.

// rolloutPlan is one rollout's plan as it passes through the stages.
type rolloutPlan struct {
	r     *projections.Rollout
	t     target
	spec  projections.RolloutSpec
	st    *projections.RolloutStatus
	conds *conditions

	mine      []*projections.Pod // the pods this rollout drives
	conflicts []string           // pods an older rollout drives
	// rollingBack: onFailure is Rollback and this target failed (recorded
	// in a status written and observed back). rolledBack: the rollback is
	// over; the rollout holds until its target changes.
	rollingBack, rolledBack bool
	// analyzing: the current step's analysis is still measuring.
	// analysisFailed: it failed, and says how (see steps).
	analyzing      bool
	analysisFailed string
	// promoted is the last step with an analysis that spec.approvedSteps
	// promoted past, -1 for none.
	promoted int32
	plans    []*podPlan
	n        tally
	// all is mine's classifications, nil for a pod not yet scheduled;
	// counts what each adds to the tally (podCount). The incremental
	// planner keeps them (delta.go).
	all    []*podPlan
	counts []podCount
	key    string // r.Key(), made once
}

// tally counts the pods of a rollout by stage.
type tally struct {
	done, started, failed, blocked, skipped, noGate, diverged, recreating int
	// stalled counts pods whose next write for this revision will not be
	// retried (see allowed).
	stalled int
	// waiting counts idle pods that are not candidates only because an
	// action of another kind is in flight or planned for them (countWaiting).
	waiting int
	// unavailable counts pods out of service, for whatever reason: not
	// ready, gated, deleting, a start in flight, updating, or a restart
	// the kubelet is about to make.
	unavailable int
	// The first pod (and why) of each kind, for condition messages.
	failedWhy, blockedWhy, divergedWhy, recreateWhy, evictionBlocked string
	stalledWhy                                                       []string
	// Pods at a lifecycle hook: waiting, timed out and holding the
	// rollout (onTimeout Pause), timed out and gone on (Proceed).
	hookWaiting, hookPaused, hookProceeded []*podPlan
}

// stopped: a failure holds the rollout (verification timed out, a pod
// made for the target still differs, a write that cannot succeed), unless
// it is rolling back.
func (rp *rolloutPlan) stopped() bool {
	return (rp.n.failed > 0 || rp.n.diverged > 0 || rp.n.stalled > 0 || rp.analysisFailed != "") && !rp.rollingBack
}

// stopReason names what stopped the rollout, "" when nothing did.
func (rp *rolloutPlan) stopReason() string {
	switch {
	case !rp.stopped():
		return ""
	case rp.n.failed > 0:
		return "VerifyFailed"
	case rp.n.diverged > 0:
		return "RecreatedPodDiffers"
	case rp.n.stalled == 0:
		return "AnalysisFailed"
	}
	return "WriteFailed"
}

// releaseMessage is the gate condition's message on a pod released before
// its patch.
func (rp *rolloutPlan) releaseMessage(before string) string {
	switch {
	case rp.n.stalled > 0 && !rp.rollingBack:
		return "released: rollout stopped, a write cannot succeed: " + rp.n.stalledWhy[0]
	case rp.n.diverged > 0 && !rp.rollingBack:
		return "released: rollout stopped: " + rp.n.divergedWhy
	}
	return "released: rollout paused before the " + before
}

// hookPaused: a lifecycle hook timed out with onTimeout Pause. No new pod
// starts; unlike holding, pods already gated stay held for their hook.
func (rp *rolloutPlan) hookPaused() bool { return len(rp.n.hookPaused) > 0 }

// holding: no new pod starts, and gated pods not yet patched are released.
func (rp *rolloutPlan) holding() bool {
	return (rp.spec.Paused || rp.stopped() || rp.rolledBack) && !rp.rollingBack
}

func (p *planning) rolloutPods(r *projections.Rollout, t target, pods []*projections.Pod, st *projections.RolloutStatus, conds *conditions) {
	rp := newRolloutPlan(r, t, st, conds)
	if !p.selectPods(rp, pods) {
		return
	}
	p.enterRevision(rp)
	p.classifyPods(rp)
	p.count(rp)
	if p.act(rp, p.drive) && p.unit != nil {
		p.unit.plans, p.unit.counts, p.unit.simple = rp.all, rp.counts, rp.simple()
	}
}

// newRolloutPlan starts a rollout's plan: its target is valid.
func newRolloutPlan(r *projections.Rollout, t target, st *projections.RolloutStatus, conds *conditions) *rolloutPlan {
	rp := &rolloutPlan{r: r, t: t, spec: r.Spec, st: st, conds: conds, promoted: -1, key: r.Key()}
	conds.set("Invalid", "False", "Valid", "")
	if t.workload != nil {
		conds.set("WorkloadFound", "True", "Found", "")
	}
	st.TargetRevision = t.rev
	if t.workload != nil {
		st.WorkloadRevision, st.WorkloadGeneration = t.toName, t.workload.Generation
	}
	return rp
}

// act plans from the tally: the conditions, the budgets, the pods under
// way (drive), the starts and the phase. It reports false for a rollout
// that cannot plan.
func (p *planning) act(rp *rolloutPlan, drive func(rp *rolloutPlan, collect bool) ([]*podPlan, int)) bool {
	p.report(rp)
	updates, budget, maxUpdated, hold, ok := p.budgets(rp)
	if !ok {
		// A rollout that cannot plan lets go of its pods, as an invalid
		// target does, so a pod it gated is released by Plan.
		for _, pod := range rp.mine {
			p.unclaim(pod.Key())
		}
		return false
	}
	// Candidates are listed only when some may start: mid-rollout the
	// budget is mostly spent, and the list of every idle pod was a plan's
	// largest garbage.
	candidates, n := drive(rp, updates > 0 && budget > 0)
	p.start(rp, candidates, updates, budget)
	p.phase(rp, n, maxUpdated, hold)
	return true
}

// selectPods claims the rollout's pods; a pod an older rollout claimed is
// left to it. It reports false when the rollout cannot plan at all.
func (p *planning) selectPods(rp *rolloutPlan, pods []*projections.Pod) bool {
	if rp.t.workload == nil {
		// A selector target names containers the schema cannot check: one
		// that no selected pod has is a typo, not a per-pod problem, and
		// such a rollout claims nothing.
		if name := missingContainer(rp.spec, pods); name != "" {
			rp.conds.set("Invalid", "True", "UnknownContainer", fmt.Sprintf("spec.containers names %q, which none of the %d selected pods has: fix the name or the selector", name, len(pods)))
			rp.st.Phase = projections.PhaseFailed
			return false
		}
	}
	rk := rp.r.Key()
	// mine is pods itself until a pod is left to an older rollout: the
	// unit keeps its pods' classifications beside it (keptPlans).
	rp.mine = pods
	me := claimantOf(rk)
	for i, pod := range pods {
		k := pod.Key()
		// claimOf and claim in one look-up: most pods are this rollout's
		// already, from its last plan.
		switch owner, ok := p.inc.claims[k]; {
		case ok && owner != me && p.processed[owner.Value()]:
			if len(rp.conflicts) == 0 {
				rp.mine = slices.Clone(pods[:i])
			}
			rp.conflicts = append(rp.conflicts, pod.Name+" (claimed by "+owner.Value()+")")
			continue
		case owner != me:
			p.inc.claims[k] = me
		}
		if p.unit != nil {
			p.unit.claims = append(p.unit.claims, k)
		}
		if len(rp.conflicts) > 0 {
			rp.mine = append(rp.mine, pod)
		}
	}
	if len(rp.conflicts) > 0 {
		rp.conds.set("Conflict", "True", "ClaimedByOlderRollout", fmt.Sprintf("%d pods belong to an older rollout and are left to it: %s", len(rp.conflicts), firstN(rp.conflicts, 3)))
	} else {
		rp.conds.set("Conflict", "False", "NoConflict", "")
	}
	return true
}

// enterRevision sets what a rollout's target revision carries over: a new
// target starts from its first step, with the failures, pauses and step
// approvals of the old one left behind; the same target keeps rolling
// back, or stays rolled back, until it changes.
func (p *planning) enterRevision(rp *rolloutPlan) {
	r, st, conds := rp.r, rp.st, rp.conds
	rp.rollingBack = rp.spec.Strategy.OnFailure == "Rollback" && r.Status.TargetRevision == rp.t.rev && conds.is("RollingBack")
	if r.Status.TargetRevision != rp.t.rev {
		conds.set("RollingBack", "False", "NewRevision", "")
		conds.set("Failed", "False", "NewRevision", "")
		conds.set("HookTimedOut", "False", "NewRevision", "")
		conds.set("Analysis", "False", "NewRevision", "")
		st.StepPausedAt = nil
		st.CurrentStep = 0
		// Approvals so far were for the old revision (none for a new
		// rollout, whose pre-approvals count).
		if r.Status.TargetRevision != "" {
			st.ApprovedStepsBase = rp.spec.ApprovedSteps
		}
	}
	rp.rolledBack = !rp.rollingBack && r.Status.Phase == projections.PhaseRolledBack && r.Status.TargetRevision == rp.t.rev
}

// classifyPods places every pod relative to its target. Invariants: a pod
// this rollout never updated is untouched by its rollback (but counted,
// and released if gated); an unscheduled pod counts as unavailable and is
// not planned; a pod made for the target is never recreated again for it.
func (p *planning) classifyPods(rp *rolloutPlan) {
	kept := p.keptPlans(rp)
	rp.all = make([]*podPlan, len(rp.mine))
	for i, pod := range rp.mine {
		pp, ok := kept.get(pod, p.touched, p.now)
		if !ok {
			pp = p.classifyPod(rp, pod)
		}
		rp.all[i] = pp
		if pp != nil {
			rp.plans = append(rp.plans, pp)
		}
	}
	if p.unit != nil {
		p.unit.kept.keep(rp.mine, rp.all)
	}
}

// classifyPod places one pod; nil for a pod not yet scheduled, which
// counts as unavailable and is not planned.
func (p *planning) classifyPod(rp *rolloutPlan, pod *projections.Pod) *podPlan {
	pt, ok := p.podTarget(rp, pod)
	if !ok {
		return untouched(pod)
	}
	if pod.Pod.NodeName == "" && pod.Pod.Phase == "Pending" {
		return nil
	}
	pp := classify(pod, pt, rp.spec, p.now)
	if pp.stage == stageRecreate && p.recreatedForTarget(pod, rp.r.Key(), rp.t) {
		// Another recreate would make the same pod, and the next, in a
		// loop at maxUnavailable pods a time.
		pp.stage = stageDiverged
	}
	return pp
}

// podTarget is what pod should become in rp: false for a pod its
// rollback leaves untouched.
func (p *planning) podTarget(rp *rolloutPlan, pod *projections.Pod) (podTarget, bool) {
	if rp.rollingBack {
		return rollbackTarget(pod, rp.t.rev)
	}
	return rp.t.forPod(p.s, pod), true
}

// count tallies the pods (see counted for the invariants).
func (p *planning) count(rp *rolloutPlan) {
	rp.counts = make([]podCount, len(rp.all))
	for i, pp := range rp.all {
		rp.counts[i] = p.counted(pp)
	}
	p.tally(rp)
}

// tally adds up the pods' counts (see counted); a pod counted rare adds
// its words, in pod order.
func (p *planning) tally(rp *rolloutPlan) {
	n, st := &rp.n, rp.st
	unscheduled := 0
	// Neighbours mostly count alike (a StatefulSet rolls by ordinal, and
	// most of a rollout's pods are idle or done): each run of equal counts
	// is added at once, which was a third of a plan made from the last one
	// at 10,000 pods. Rare pods still add their words one by one, in order.
	for i := 0; i < len(rp.counts); {
		c, j := rp.counts[i], i+1
		for j < len(rp.counts) && rp.counts[j] == c {
			j++
		}
		switch {
		case c&countUnscheduled != 0:
			unscheduled += j - i
		case c&countRare != 0:
			for ; i < j; i++ {
				n.add(c, st, 1)
				p.countRare(rp, rp.all[i])
			}
		default:
			n.add(c, st, j-i)
		}
		i = j
	}
	st.Replicas = int32(len(rp.all))
	n.unavailable += unscheduled + p.missing(rp) // and the pods not made yet
	st.Unavailable, st.Failed = int32(n.unavailable), int32(n.failed)
}

// missing counts the pods the workload has not (re)created yet, an evicted
// one among them: they are unavailable too. Without them, the budget would
// let the next eviction start before the replacement is seen.
func (p *planning) missing(rp *rolloutPlan) int {
	if w := rp.t.workload; w != nil {
		return max(int(w.Workload.Replicas)-len(rp.mine)-len(rp.conflicts), 0)
	}
	return 0
}

// countRare tallies what a pod counted rare adds besides its counts: the
// words of a failure, a block, a divergence, a recreate, a stalled write
// or a hook's wait, in pod order, for the conditions.
func (p *planning) countRare(rp *rolloutPlan, pp *podPlan) {
	n := &rp.n
	if why := p.stalled(pp); why != "" { // counted asked it already: no new wake-up
		n.stalled++
		n.stalledWhy = append(n.stalledWhy, pp.pod.Name+": "+why)
	}
	switch {
	case pp.hookState() == hookWaiting:
		n.hookWaiting = append(n.hookWaiting, pp)
	case pp.hookState() == hookTimedOut && proceeds(pp.hook().hook):
		n.hookProceeded = append(n.hookProceeded, pp)
	case pp.hookState() == hookTimedOut:
		n.hookPaused = append(n.hookPaused, pp)
	}
	switch pp.stage {
	case stageFailed:
		n.failed++
		n.failedWhy = first(n.failedWhy, pp.pod.Name+": "+pp.why())
	case stageBlocked:
		n.blocked++
		n.blockedWhy = first(n.blockedWhy, pp.pod.Name+": "+pp.why())
	case stageSkipped:
		n.skipped++
	case stageDiverged:
		n.diverged++
		n.divergedWhy = first(n.divergedWhy, pp.pod.Name+": "+pp.why())
	case stageRecreate:
		n.recreating++
		// No pod name or count: the message stays put while pods are
		// recreated, and costs no status write per pod.
		n.recreateWhy = first(n.recreateWhy, pp.why())
		if f := p.s.Failures[Action{Kind: Recreate, Pod: pp.pod.Key(), UID: pp.pod.UID.String(), Revision: rp.t.rev}.Key()]; f != nil && f.Class == "blocked" {
			n.evictionBlocked = first(n.evictionBlocked, pp.pod.Name+": "+f.Error)
		}
	}
}

func first(have, candidate string) string {
	if have != "" {
		return have
	}
	return candidate
}

// report sets the conditions the tally implies. Invariants: a write that
// is never retried (see allowed) is reported, never silent; a recreate is
// never silent: the condition and a Warning Event name the field that
// forced it.
func (p *planning) report(rp *rolloutPlan) {
	n, conds, spec := &rp.n, rp.conds, rp.spec
	switch {
	case n.noGate > 0 && spec.RequireReadinessGate:
		conds.set("NoReadinessGate", "True", "Skipped", fmt.Sprintf("%d pods do not declare readiness gate %s and are skipped (requireReadinessGate)", n.skipped, GateCondition))
	case n.noGate > 0:
		conds.set("NoReadinessGate", "True", "UpdatedWithoutDrain", fmt.Sprintf("%d pods do not declare readiness gate %s: they are updated without leaving Service endpoints first; add the gate to the pod template", n.noGate, GateCondition))
	default:
		conds.set("NoReadinessGate", "False", "AllGated", "")
	}
	if n.stalled > 0 {
		conds.set("Stalled", "True", "WriteFailed", fmt.Sprintf("%d pods cannot proceed with this revision: a write failed and is not retried; %s", n.stalled, firstN(n.stalledWhy, 3)))
	} else {
		conds.set("Stalled", "False", "NoFailedWrites", "")
	}
	switch {
	case n.diverged > 0:
		conds.set("NotInPlace", "True", "RecreatedPodDiffers", fmt.Sprintf("%d pods were created from the target revision and still cannot take it in place; first: %s. Recreating them again would loop, so the rollout stopped and released its gates: fix the template or the rollout", n.diverged, n.divergedWhy))
	case n.blocked > 0:
		conds.set("NotInPlace", "True", "FallbackNever", fmt.Sprintf("%d pods need changes that cannot be made in place and fallback is Never (or there is no template to recreate from); first: %s", n.blocked, n.blockedWhy))
	case n.recreating > 0:
		conds.set("NotInPlace", "True", "Recreating", "pods are recreated through eviction (fallback Recreate), not updated in place: "+n.recreateWhy)
		p.event(rp.r, "Warning", "Recreating", fmt.Sprintf("pods are recreated, not updated in place: %s (revision %s)", n.recreateWhy, rp.t.rev))
	default:
		conds.set("NotInPlace", "False", "InPlace", "")
	}
	p.reportHooks(rp)
	p.reportScatter(rp)
	if n.evictionBlocked != "" {
		conds.set("EvictionBlocked", "True", "DisruptionBudget", "an eviction is refused and retried with backoff until the PodDisruptionBudget allows it; first: "+n.evictionBlocked)
	} else {
		conds.set("EvictionBlocked", "False", "Evicting", "")
	}
}

// budgets returns how many more pods may start now (updates: steps and
// partition, spent by every start) and how many more ready pods may
// become unavailable (budget: maxUnavailable, spent only by starting a
// ready pod), with the rollout's update ceiling and whether a step pause
// holds it. Two allowances, not one: pods already unready spend no budget
// but still count toward the partition. ok is false for a strategy that
// cannot be computed (reported as Invalid).
func (p *planning) budgets(rp *rolloutPlan) (updates, budget, maxUpdated int, hold, ok bool) {
	spec, st, conds, n := rp.spec, rp.st, rp.conds, &rp.n
	replicas := int(st.Replicas)
	if _, err := prioritySelectors(spec); err != nil {
		conds.set("Invalid", "True", "InvalidSpec", err.Error()+": fix the selector; the rollout does not go on in another order than the one asked for")
		st.Phase = projections.PhaseFailed
		return 0, 0, 0, false, false
	}
	maxUnavailable, err := scaled(spec.Strategy.MaxUnavailable, replicas, 1, false)
	if err != nil {
		conds.set("Invalid", "True", "InvalidSpec", "spec.strategy.maxUnavailable "+err.Error())
		st.Phase = projections.PhaseFailed
		return 0, 0, 0, false, false
	}
	maxUnavailable = max(maxUnavailable, 1)
	partition, err := scaled(spec.Strategy.Partition, replicas, 0, true)
	if err != nil {
		conds.set("Invalid", "True", "InvalidSpec", "spec.strategy.partition "+err.Error())
		st.Phase = projections.PhaseFailed
		return 0, 0, 0, false, false
	}
	maxUpdated = max(replicas-partition, 0)
	capNow, hold, step := p.steps(rp, replicas, maxUpdated, n.done)
	st.CurrentStep = step
	p.reportAnalysis(rp)

	switch {
	case n.diverged > 0 && !rp.rollingBack:
		conds.set("Failed", "True", "RecreatedPodDiffers", "a pod made from the target revision still differs: see the NotInPlace condition")
	case n.stalled > 0 && n.failed == 0 && !rp.rollingBack:
		conds.set("Failed", "True", "WriteFailed", fmt.Sprintf("a write cannot succeed and the rollout stopped, releasing its gates; first: %s. Fix the cause (the pods' admission, RBAC) and change the target or the rollout", n.stalledWhy[0]))
	case rp.analysisFailed != "" && n.failed == 0 && !rp.rollingBack:
		conds.set("Failed", "True", "AnalysisFailed", rp.analysisFailed)
		if spec.Strategy.OnFailure == "Rollback" {
			conds.set("RollingBack", "True", "AnalysisFailed", "rolling updated pods back in place to their recorded images")
		}
	case rp.stopped():
		conds.set("Failed", "True", "VerifyTimeout", fmt.Sprintf("%d pods did not verify within %ds; first: %s. Fix the image (a new spec revision re-plans gated pods) or set strategy.onFailure: Rollback",
			n.failed, verifyTimeout(spec)/1e9, n.failedWhy))
		if spec.Strategy.OnFailure == "Rollback" {
			conds.set("RollingBack", "True", "VerifyTimeout", "rolling updated pods back in place to their recorded images")
		}
	case !rp.rollingBack && !rp.rolledBack && rp.r.Status.TargetRevision == rp.t.rev && conds.is("Failed") && n.failed == 0:
		conds.set("Failed", "False", "Recovered", "")
	}
	updates, budget = capNow-n.done-n.started, maxUnavailable-n.unavailable
	switch {
	case rp.rollingBack:
		// Undoing is not bound by steps or partition, only by availability.
		updates = len(rp.plans)
	case spec.Paused || hold || rp.stopped() || rp.rolledBack || rp.hookPaused() || rp.analyzing:
		updates = 0
	}
	return updates, budget, maxUpdated, hold, true
}

// drive acts on the pods already under way and counts those that may
// start, listing them when collect. Invariant: no pod stays gated with
// nothing driving it: a gated pod is patched after its grace period,
// released while the rollout holds, and released when its target turns
// out not to be reachable in place (blocked, skipped, diverged) or needs
// a recreate the rollout will not start now.
func (p *planning) drive(rp *rolloutPlan, collect bool) (candidates []*podPlan, n int) {
	for _, pp := range rp.plans {
		if p.drivePod(rp, pp) {
			n++
			if collect {
				candidates = append(candidates, pp)
			}
		}
	}
	return candidates, n
}

// drivePod acts on one pod under way and reports whether it may start.
func (p *planning) drivePod(rp *rolloutPlan, pp *podPlan) (candidate bool) {
	rk, t, spec := rp.key, rp.t, rp.spec
	key := pp.pod.Key()
	if p.busy[key] || p.s.Pending[key] != nil {
		return false
	}
	switch pp.stage {
	case stageVerified:
		p.try(p.verifiedUngate(rp, pp))
	case stageGated:
		if rp.holding() || pp.untouched {
			p.try(unmark(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID.String(), Rollout: rk, Reason: ReasonReady, Message: rp.releaseMessage("patch")}, pp.pod))
			return false
		}
		if pp.hookState() != hookNone && !p.waitHook(rp, pp) {
			return false
		}
		if due := pp.gatedAt() + gracePeriod(spec); p.now < due {
			p.wake(due)
			return false
		}
		p.try(p.patch(rp, pp, revOf(pp, t.rev)))
	case stageResize:
		p.try(Action{Kind: Resize, Pod: key, UID: pp.pod.UID.String(), Rollout: rk, Revision: revOf(pp, t.rev), Resources: pp.rarely().resources})
	case stageVerifying:
		p.wake(pp.until()) // its verification's deadline
	case stagePostHook:
		if pp.hookState() == hookWaiting {
			p.wake(pp.hook().until)
		} else {
			p.hookTimeoutEvent(rp, pp)
		}
	case stageDone:
		if pp.hookState() == hookTimedOut {
			p.hookTimeoutEvent(rp, pp) // post-update, onTimeout Proceed
		}
	case stageBlocked, stageSkipped, stageDiverged:
		if pp.gated {
			p.try(unmark(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID.String(), Rollout: rk, Reason: ReasonReady, Message: "released: cannot be updated in place: " + pp.why()}, pp.pod))
		}
	case stageRecreate:
		switch {
		case !pp.gated:
			return true
		case rp.holding():
			p.try(unmark(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID.String(), Rollout: rk, Reason: ReasonReady, Message: rp.releaseMessage("recreate")}, pp.pod))
		case pp.pod.Deleting == 0:
			// Gated for an in-place target that changed to one needing
			// a new pod: its own gate already spent the budget.
			p.try(Action{Kind: Recreate, Pod: key, UID: pp.pod.UID.String(), Rollout: rk, Revision: t.rev, Message: pp.why()})
		}
	case stageIdle:
		return true
	}
	return false
}

// start starts candidates in the rollout's order (priority, scatter)
// while both allowances last. A pod with nothing to drain (no gate, or
// every changed container skips the drain) is patched at once, unless a
// pre-update hook must be asked first.
func (p *planning) start(rp *rolloutPlan, candidates []*podPlan, updates, budget int) {
	if updates <= 0 || budget <= 0 {
		return
	}
	rk, t := rp.r.Key(), rp.t
	next := ordered(p.s, rp.spec, candidates, p.inc.scatterGroups())
	for pp := next(); pp != nil; pp = next() {
		if updates <= 0 || budget <= 0 {
			return
		}
		if pp.pod.Deleting != 0 {
			continue
		}
		key := pp.pod.Key()
		var a Action
		switch {
		case pp.stage == stageRecreate:
			a = Action{Kind: Recreate, Pod: key, UID: pp.pod.UID.String(), Rollout: rk, Revision: t.rev, Message: pp.why()}
		case pp.hasGate && !pp.skipDrain, preHook(rp.spec) != nil:
			a = p.gate(rp, pp)
		default:
			a = p.patch(rp, pp, revOf(pp, t.rev))
		}
		if p.try(a) {
			updates--
			if pp.ready {
				budget-- // an unready pod is already counted unavailable
			}
		}
	}
}

// phase sets the rollout's phase. Invariants: Succeeded needs every pod
// it had to update done and ready, and no pod left to an older rollout; a
// dead end (a rollback that does not verify, pods that cannot be changed
// in place with nothing else to do, a pod made for the target that still
// differs) is Failed, never Progressing forever; a failed rollback
// releases its gates.
func (p *planning) phase(rp *rolloutPlan, candidates, maxUpdated int, hold bool) {
	st, conds, n, spec := rp.st, rp.conds, &rp.n, rp.spec
	// left: pods still to start, the candidates and the idle pods an
	// action of another kind keeps from being one in this plan (an
	// initial ungate). Without the latter a rollout with blocked pods
	// flashed Failed, with a Warning event, for the one plan that ungated
	// new pods.
	left := candidates + n.waiting
	switch {
	case len(rp.mine) == 0 && len(rp.conflicts) > 0:
		st.Phase = projections.PhasePending
	case rp.rollingBack && n.started == 0 && left == 0:
		st.Phase = projections.PhaseRolledBack
		conds.set("RollingBack", "False", "RolledBack", "updated pods were rolled back to their recorded images")
	case rp.rollingBack && n.failed > 0 && n.started == n.failed && left == 0:
		st.Phase = projections.PhaseFailed
		conds.set("Failed", "True", "RollbackFailed", fmt.Sprintf("%d pods did not verify on their recorded images either; first: %s. They were released from the gate: repair them by hand, or change the target", n.failed, n.failedWhy))
	case rp.rollingBack:
		st.Phase = projections.PhaseProgressing
	case n.diverged > 0, n.stalled > 0 && n.failed == 0:
		st.Phase = projections.PhaseFailed
	case rp.stopped() || spec.Paused || hold || rp.hookPaused():
		st.Phase = projections.PhasePaused
	case rp.analyzing:
		st.Phase = projections.PhaseProgressing
	case n.done >= maxUpdated && n.started == 0 && n.blocked == 0 && int(st.UpdatedReady) == n.done && len(rp.conflicts) > 0:
		st.Phase = projections.PhasePending
	case n.done >= maxUpdated && n.started == 0 && n.blocked == 0 && int(st.UpdatedReady) == n.done:
		st.Phase = projections.PhaseSucceeded
	case n.blocked+n.skipped > 0 && n.started == 0 && left == 0:
		st.Phase = projections.PhaseFailed
	default:
		st.Phase = projections.PhaseProgressing
	}
	if rp.rolledBack {
		st.Phase = projections.PhaseRolledBack
	}
	if rp.rollingBack && st.Phase == projections.PhaseFailed {
		for _, pp := range rp.plans {
			key := pp.pod.Key()
			if pp.stage == stageFailed && pp.gated && !p.busy[key] && p.s.Pending[key] == nil {
				p.try(unmark(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID.String(), Rollout: rp.r.Key(), Reason: ReasonReady, Message: "released: its rollback did not verify either"}, pp.pod))
			}
		}
	}
	reason, msg := pauseReason(spec, hold, rp.stopReason()), pauseMessage(spec, hold, rp.stopped(), st.CurrentStep, st.ApprovedStepsBase)
	if reason == "AnalysisFailed" {
		msg = "an analysis failed: see the Failed condition"
	}
	if reason == "Running" && rp.hookPaused() {
		reason, msg = "HookTimeout", "a lifecycle hook did not release a pod in time: see the HookTimedOut condition"
	}
	conds.set("Paused", boolStatus(st.Phase == projections.PhasePaused), reason, msg)
}
