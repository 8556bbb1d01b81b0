package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"rollbook.dev/rollbook/projections"
)

// Result is what to do now, and when to plan again.
type Result struct {
	// Actions may be carried out in any order and concurrently: the plan
	// holds at most one action per object.
	Actions []Action
	// WakeAt is the Unix-ns time at which planning again would find
	// something new (a grace period or a pause ending, a timeout), 0 if
	// nothing is timed. The loop journals a Tick then.
	WakeAt int64
}

type planning struct {
	s       *projections.State
	now     int64
	res     Result
	claimed map[string]string // pod key → rollout key
	busy    map[string]bool   // pod key → has an action in this plan
}

// Plan derives the actions for state s at s.Now.
func Plan(s *projections.State) Result {
	p := &planning{s: s, now: s.Now, claimed: map[string]string{}, busy: map[string]bool{}}
	keys := sortedPodKeys(s)
	// A pod that declares the gate and has no condition never becomes
	// Ready: set it True as soon as it is seen, rollout or not.
	for _, k := range keys {
		pod := s.Pods[k]
		if pod.Pod == nil || pod.Deleting != 0 || !declaresGate(pod.Pod) || gateCondition(pod.Pod) != nil || s.Pending[k] != nil {
			continue
		}
		p.add(Action{Kind: Ungate, Pod: k, UID: pod.UID, Reason: ReasonReady, Message: "initial: no update in progress"})
	}
	for _, r := range rolloutsByAge(s) {
		p.rollout(r)
	}
	// A pod gated by Rollbook that no rollout drives any more (the rollout
	// was deleted, or now targets other pods) is released at once.
	for _, k := range keys {
		pod := s.Pods[k]
		if _, ok := p.claimed[k]; ok || p.busy[k] || pod.Pod == nil || s.Pending[k] != nil {
			continue
		}
		if c := gateCondition(pod.Pod); c != nil && c.Status == "False" && c.Reason == ReasonUpdating {
			p.add(Action{Kind: Ungate, Pod: k, UID: pod.UID, Reason: ReasonReady, Message: "released: no rollout drives this pod"})
		}
	}
	return p.res
}

func (p *planning) add(a Action) {
	if a.Pod != "" {
		p.busy[a.Pod] = true
	}
	p.res.Actions = append(p.res.Actions, a)
}

func (p *planning) wake(at int64) {
	if at > p.now && (p.res.WakeAt == 0 || at < p.res.WakeAt) {
		p.res.WakeAt = at
	}
}

// rolloutsByAge: the older rollout claims a pod first.
func rolloutsByAge(s *projections.State) []*projections.Rollout {
	out := make([]*projections.Rollout, 0, len(s.Rollouts))
	for _, r := range s.Rollouts {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created < out[j].Created
		}
		return out[i].Key() < out[j].Key()
	})
	return out
}

// TraceID derives a rollout's trace ID from its UID, so the trace of a
// rollout survives controller restarts.
func TraceID(uid string) string {
	sum := sha256.Sum256([]byte("rollbook/trace/" + uid))
	return hex.EncodeToString(sum[:16])
}

// RolloutTraceParent is the W3C traceparent of the rollout's root span:
// TraceID and the root span's ID as the tracing package derives them
// (tracing.RolloutTraceParent; a test keeps the two equal).
func RolloutTraceParent(uid string) string {
	sum := sha256.Sum256([]byte("rollbook/span/" + uid + "/rollout"))
	id := sum[:8]
	if string(id) == "\x00\x00\x00\x00\x00\x00\x00\x00" {
		id[7] = 1
	}
	return "00-" + TraceID(uid) + "-" + hex.EncodeToString(id) + "-01"
}

// allowed says whether an action key may run now given its failures, and
// until when to wait otherwise. Conflicts replan at once (the state they
// conflicted with is new), but not forever.
func (p *planning) allowed(a Action) (ok bool, reason string) {
	f := p.s.Failures[a.Key()]
	if f == nil {
		return true, ""
	}
	switch {
	// FIX(test): a status write's key names only the rollout, so one
	// refused status write froze the rollout's status for good (the sim
	// found a rollout shown Progressing forever after it had succeeded).
	// A status is recomputed every time: retry it with backoff.
	case a.Kind == Status && (f.Class == "invalid" || f.Class == "gone"):
	case f.Class == "invalid", f.Class == "gone":
		return false, f.Error
	case f.Class == "conflict", f.Class == "abandoned":
		if f.Count >= 5 {
			return false, fmt.Sprintf("%d conflicts in a row: %s", f.Count, f.Error)
		}
		return true, ""
	}
	backoff := int64(500e6) << min(f.Count, 6) // 1 s .. 32 s
	if p.now < f.LastAt+backoff {
		p.wake(f.LastAt + backoff)
		return false, ""
	}
	return true, ""
}

func (p *planning) rollout(r *projections.Rollout) {
	if r.Deleting != 0 {
		return
	}
	st := projections.RolloutStatus{
		ObservedGeneration: r.Generation,
		Conditions:         r.Status.Conditions,
		TraceID:            TraceID(r.UID),
		TraceParent:        RolloutTraceParent(r.UID),
		CurrentStep:        r.Status.CurrentStep,
		StepPausedAt:       r.Status.StepPausedAt,
		ApprovedStepsBase:  r.Status.ApprovedStepsBase,
	}
	conds := newConditions(r.Status.Conditions, p.now)
	t, problem, notFound := resolveTarget(p.s, r)
	if problem == "" {
		var pods []*projections.Pod
		pods, problem = selectPods(p.s, r, t)
		if problem == "" && t.workload != nil && (t.workload.Workload.ObservedGeneration < t.workload.Generation || t.to == nil) {
			// NB: the workload's controller has not yet observed its new
			// template, so its update revision (the label pods must carry)
			// is the old one; or the target revision's ControllerRevision
			// has not come on its watch yet. Planning now would patch pods
			// toward a target that changes a moment later, and patch them a
			// second time. Hold, keeping the pods claimed: the records that
			// end the wait wake the planner.
			for _, pod := range pods {
				if _, ok := p.claimed[pod.Key()]; !ok {
					p.claimed[pod.Key()] = r.Key()
				}
			}
			if t.workload.Workload.ObservedGeneration >= t.workload.Generation {
				st.Phase = projections.PhasePending
				conds.set("RevisionObserved", "False", "RevisionNotObserved", fmt.Sprintf(
					"waiting for the ControllerRevision of %s %s's current template (%s): Rollbook decides what changed from revisions and needs list and watch on controllerrevisions.apps",
					t.workload.Workload.Kind, t.workload.Name, orNone(t.label)))
				p.finishStatus(r, &st, conds)
			}
			return
		}
		if t.workload != nil && conds.has("RevisionObserved") {
			conds.set("RevisionObserved", "True", "Observed", "")
		}
		if problem == "" {
			p.rolloutPods(r, t, pods, &st, conds)
			p.finishStatus(r, &st, conds)
			return
		}
	}
	if notFound {
		st.Phase = projections.PhasePending
		conds.set("WorkloadFound", "False", "NotFound", problem)
	} else {
		st.Phase = projections.PhaseFailed
		conds.set("Invalid", "True", "InvalidSpec", problem)
	}
	p.finishStatus(r, &st, conds)
}

func (p *planning) rolloutPods(r *projections.Rollout, t target, pods []*projections.Pod, st *projections.RolloutStatus, conds *conditions) {
	rk, spec := r.Key(), r.Spec
	conds.set("Invalid", "False", "Valid", "")
	if t.workload != nil {
		conds.set("WorkloadFound", "True", "Found", "")
	}
	st.TargetRevision = t.rev
	if t.workload == nil {
		// A selector target names containers the schema cannot check: one
		// that no selected pod has is a typo, not a per-pod problem, and
		// such a rollout claims nothing.
		for _, ct := range spec.Containers {
			if len(pods) > 0 && !anyHas(pods, ct.Name) {
				conds.set("Invalid", "True", "UnknownContainer", fmt.Sprintf("spec.containers names %q, which none of the %d selected pods has: fix the name or the selector", ct.Name, len(pods)))
				st.Phase = projections.PhaseFailed
				return
			}
		}
	}
	var mine []*projections.Pod
	var conflicts []string
	for _, pod := range pods {
		if owner, ok := p.claimed[pod.Key()]; ok {
			conflicts = append(conflicts, pod.Name+" (claimed by "+owner+")")
			continue
		}
		p.claimed[pod.Key()] = rk
		mine = append(mine, pod)
	}
	if len(conflicts) > 0 {
		conds.set("Conflict", "True", "ClaimedByOlderRollout", fmt.Sprintf("%d pods belong to an older rollout and are left to it: %s", len(conflicts), firstN(conflicts, 3)))
	} else {
		conds.set("Conflict", "False", "NoConflict", "")
	}
	// Rolling back: the failure was recorded in a status the planner wrote
	// and observed back, for this same target.
	rollingBack := spec.Strategy.OnFailure == "Rollback" && r.Status.TargetRevision == t.rev && conds.is("RollingBack")
	if r.Status.TargetRevision != t.rev {
		// A new target: failures and pauses of the old one are history.
		conds.set("RollingBack", "False", "NewRevision", "")
		conds.set("Failed", "False", "NewRevision", "")
		st.StepPausedAt = nil
		// Approvals so far were for the old revision (none for a new
		// rollout, whose pre-approvals count).
		if r.Status.TargetRevision != "" {
			st.ApprovedStepsBase = spec.ApprovedSteps
		}
		// FIX(test): a new target starts again from the first step; the old
		// target's step index would otherwise skip the new one's pauses.
		st.CurrentStep = 0
	}
	// FIX(test): once rolled back, the rollout stays put until its target
	// changes; without this the next plan (no longer rolling back, no pod
	// failing) rolled forward to the very revision that failed.
	rolledBack := !rollingBack && r.Status.Phase == projections.PhaseRolledBack && r.Status.TargetRevision == t.rev
	var plans []*podPlan
	for _, pod := range mine {
		pt := t.forPod(p.s, pod)
		if rollingBack {
			var ok bool
			if pt, ok = rollbackTarget(pod, t.rev); !ok {
				// FIX(test): never updated by this rollout: nothing to undo,
				// but it still counts toward replicas and availability, and
				// if it was gated before the failure it must be released
				// (it used to be skipped, left gated with nothing driving it).
				plans = append(plans, untouched(pod))
				continue
			}
		}
		if pod.Pod.NodeName == "" && pod.Pod.Phase == "Pending" {
			st.Replicas++
			st.Unavailable++
			continue // not scheduled: nothing to update in place yet
		}
		pp := classify(pod, pt, spec, p.now)
		if pp.stage == stageRecreate && p.recreatedForTarget(pod, rk, t) {
			// A pod its workload made from the target revision (or that
			// replaced one this rollout recreated for it) is never recreated
			// again for that revision: another recreate would make the same
			// pod, and the next, in a loop at maxUnavailable pods a time.
			pp.stage = stageDiverged
		}
		plans = append(plans, pp)
	}
	st.Replicas += int32(len(plans))
	replicas := int(st.Replicas)

	// Count.
	var done, started, failed, blocked, skipped, noGate, diverged, recreating int
	// FIX(test): unscheduled pods were counted above and then overwritten
	// below, and never counted against maxUnavailable.
	unavailable := int(st.Unavailable)
	var failedWhy, blockedWhy, divergedWhy, recreateWhy, evictionBlocked string
	for _, pp := range plans {
		pending := p.s.Pending[pp.pod.Key()]
		// FIX(test): a pod whose gate, patch or recreate is in flight has
		// started, although the watch does not show it yet (a patch of a pod
		// without the gate was not counted at all, so planning again before
		// its result was seen started more pods); and a pod patched and not
		// yet verified is updating, hence unavailable, even while the
		// kubelet still reports it ready (no gate, or skipDrain).
		inFlight := pending != nil && (pp.stage == stageIdle || pp.stage == stageRecreate) &&
			(pending.Kind == string(Gate) || pending.Kind == string(Patch) || pending.Kind == string(Recreate))
		if inFlight {
			started++
		}
		if !pp.ready || pp.gated || pp.pod.Deleting != 0 || inFlight || pp.stage.updating() || restartPending(pp) {
			unavailable++
		}
		if !pp.hasGate {
			noGate++
		}
		switch pp.stage {
		case stageDone:
			done++
			st.Updated++
			if pp.ready {
				st.UpdatedReady++
			}
		case stageVerified, stageVerifying:
			st.Updated++
			started++
		case stageGated, stageResize:
			started++
		case stageFailed:
			started++
			failed++
			if failedWhy == "" {
				failedWhy = pp.pod.Name + ": " + pp.why
			}
		case stageBlocked:
			blocked++
			if blockedWhy == "" {
				blockedWhy = pp.pod.Name + ": " + pp.why
			}
		case stageSkipped:
			skipped++
		case stageDiverged:
			diverged++
			if divergedWhy == "" {
				divergedWhy = pp.pod.Name + ": " + pp.why
			}
		case stageRecreate:
			recreating++
			if recreateWhy == "" {
				recreateWhy = pp.why // no pod name or count: the message stays put while pods are recreated
			}
			if f := p.s.Failures[Action{Kind: Recreate, Pod: pp.pod.Key(), UID: pp.pod.UID, Revision: t.rev}.Key()]; f != nil && f.Class == "blocked" && evictionBlocked == "" {
				evictionBlocked = pp.pod.Name + ": " + f.Error
			}
		}
	}
	st.Unavailable, st.Failed = int32(unavailable), int32(failed)

	if noGate > 0 && spec.RequireReadinessGate {
		conds.set("NoReadinessGate", "True", "Skipped", fmt.Sprintf("%d pods do not declare readiness gate %s and are skipped (requireReadinessGate)", skipped, GateCondition))
	} else if noGate > 0 {
		conds.set("NoReadinessGate", "True", "UpdatedWithoutDrain", fmt.Sprintf("%d pods do not declare readiness gate %s: they are updated without leaving Service endpoints first; add the gate to the pod template", noGate, GateCondition))
	} else {
		conds.set("NoReadinessGate", "False", "AllGated", "")
	}
	// FIX(test): a write that failed as invalid or gone, or conflicted too
	// often, is never retried for the same revision (see allowed); that was
	// silent, and the rollout showed Progressing forever. Report it.
	var stalled []string
	for _, pp := range plans {
		if why := p.stalled(pp); why != "" {
			stalled = append(stalled, pp.pod.Name+": "+why)
		}
	}
	if len(stalled) > 0 {
		conds.set("Stalled", "True", "WriteFailed", fmt.Sprintf("%d pods cannot proceed with this revision: a write failed and is not retried; %s", len(stalled), firstN(stalled, 3)))
	} else {
		conds.set("Stalled", "False", "NoFailedWrites", "")
	}
	// A recreate is never silent: the condition and an Event name the
	// field that forced it.
	switch {
	case diverged > 0:
		conds.set("NotInPlace", "True", "RecreatedPodDiffers", fmt.Sprintf("%d pods were created from the target revision and still cannot take it in place; first: %s. Recreating them again would loop, so the rollout stopped and released its gates: fix the template or the rollout", diverged, divergedWhy))
	case blocked > 0:
		msg := fmt.Sprintf("%d pods need changes that cannot be made in place and fallback is Never (or there is no template to recreate from); first: %s", blocked, blockedWhy)
		conds.set("NotInPlace", "True", "FallbackNever", msg)
	case recreating > 0:
		msg := "pods are recreated through eviction (fallback Recreate), not updated in place: " + recreateWhy
		conds.set("NotInPlace", "True", "Recreating", msg)
		p.event(r, "Warning", "Recreating", fmt.Sprintf("pods are recreated, not updated in place: %s (revision %s)", recreateWhy, t.rev))
	default:
		conds.set("NotInPlace", "False", "InPlace", "")
	}
	if evictionBlocked != "" {
		conds.set("EvictionBlocked", "True", "DisruptionBudget", "an eviction is refused and retried with backoff until the PodDisruptionBudget allows it; first: "+evictionBlocked)
	} else {
		conds.set("EvictionBlocked", "False", "Evicting", "")
	}

	// Budgets.
	// FIX(test): a rollout that cannot plan lets go of its pods, as an
	// invalid target does; they used to stay claimed, so pods it had gated
	// were left gated with nothing driving them.
	unclaim := func() {
		for _, pod := range mine {
			delete(p.claimed, pod.Key())
		}
	}
	maxUnavailable, err := scaled(spec.Strategy.MaxUnavailable, replicas, 1, false)
	if err != nil {
		conds.set("Invalid", "True", "InvalidSpec", "spec.strategy.maxUnavailable "+err.Error())
		st.Phase = projections.PhaseFailed
		unclaim()
		return
	}
	maxUnavailable = max(maxUnavailable, 1)
	partition, err := scaled(spec.Strategy.Partition, replicas, 0, true)
	if err != nil {
		conds.set("Invalid", "True", "InvalidSpec", "spec.strategy.partition "+err.Error())
		st.Phase = projections.PhaseFailed
		unclaim()
		return
	}
	maxUpdated := max(replicas-partition, 0)
	capNow, hold, step := p.steps(spec, st, replicas, maxUpdated, done)
	st.CurrentStep = step

	failing := (failed > 0 || diverged > 0) && !rollingBack
	if diverged > 0 && !rollingBack {
		conds.set("Failed", "True", "RecreatedPodDiffers", "a pod made from the target revision still differs: see the NotInPlace condition")
	} else if failing {
		conds.set("Failed", "True", "VerifyTimeout", fmt.Sprintf("%d pods did not verify within %ds; first: %s. Fix the image (a new spec revision re-plans gated pods) or set strategy.onFailure: Rollback",
			failed, verifyTimeout(spec)/1e9, failedWhy))
		if spec.Strategy.OnFailure == "Rollback" {
			conds.set("RollingBack", "True", "VerifyTimeout", "rolling updated pods back in place to their recorded images")
		}
	} else if !rollingBack && !rolledBack && r.Status.TargetRevision == t.rev && conds.is("Failed") && failed == 0 {
		conds.set("Failed", "False", "Recovered", "")
	}
	// FIX(test): two budgets, not one. updates bounds how many more pods
	// may start (steps, partition) and is spent by every start; budget
	// bounds how many more ready pods may become unavailable and is spent
	// only by starting a ready pod. With one allowance that unready pods did
	// not spend, a fleet with unready pods was updated past its partition.
	updates, budget := capNow-done-started, maxUnavailable-unavailable
	switch {
	case rollingBack:
		// Undoing is not bound by steps or partition, only by availability.
		updates = len(plans)
	case spec.Paused || hold || failing || rolledBack:
		updates = 0
	}

	// Act on pods already under way, then start new ones in order.
	var candidates []*podPlan
	for _, pp := range plans {
		key := pp.pod.Key()
		if p.busy[key] || p.s.Pending[key] != nil {
			continue
		}
		switch pp.stage {
		case stageVerified:
			p.try(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID, Rollout: rk, Revision: revOf(pp, t.rev), Reason: ReasonReady, Message: "revision " + revOf(pp, t.rev) + " verified"})
		case stageGated:
			if ((spec.Paused || failing || rolledBack) && !rollingBack) || pp.untouched {
				// Nothing will drive a gated, unpatched pod while paused
				// (or rolling back: it has nothing to undo): give it back
				// to its Service.
				p.try(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID, Rollout: rk, Reason: ReasonReady, Message: "released: rollout paused before the patch"})
				continue
			}
			if due := pp.gatedAt + gracePeriod(spec); p.now < due {
				p.wake(due)
				continue
			}
			p.try(p.patch(r, pp, revOf(pp, t.rev)))
		case stageResize:
			p.try(Action{Kind: Resize, Pod: key, UID: pp.pod.UID, Rollout: rk, Revision: revOf(pp, t.rev), Resources: pp.resources})
		case stageVerifying:
			p.wake(pp.wakeAt)
		// FIX(test): a pod gated for an in-place target that then changed to
		// one it cannot take in place (a template change of env, a
		// container it lacks) stayed gated for good: blocked and skipped
		// pods were never released, and a gated pod to recreate waited for
		// a budget its own gate was holding (deadlock at maxUnavailable 1).
		case stageBlocked, stageSkipped, stageDiverged:
			if pp.gated {
				p.try(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID, Rollout: rk, Reason: ReasonReady, Message: "released: cannot be updated in place: " + pp.why})
			}
		case stageRecreate:
			switch {
			case !pp.gated:
				candidates = append(candidates, pp)
			case (spec.Paused || failing || rolledBack) && !rollingBack:
				p.try(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID, Rollout: rk, Reason: ReasonReady, Message: "released: rollout paused before the recreate"})
			case pp.pod.Deleting == 0:
				p.try(Action{Kind: Recreate, Pod: key, UID: pp.pod.UID, Rollout: rk, Revision: t.rev, Message: pp.why})
			}
		case stageIdle:
			candidates = append(candidates, pp)
		}
	}
	if updates > 0 && budget > 0 {
		for _, pp := range order(p.s, spec, candidates) {
			if updates <= 0 || budget <= 0 {
				break
			}
			if pp.pod.Deleting != 0 {
				continue
			}
			key := pp.pod.Key()
			var a Action
			switch {
			case pp.stage == stageRecreate:
				a = Action{Kind: Recreate, Pod: key, UID: pp.pod.UID, Rollout: rk, Revision: t.rev, Message: pp.why}
			case pp.hasGate && !pp.skipDrain:
				a = Action{Kind: Gate, Pod: key, UID: pp.pod.UID, Rollout: rk, Revision: revOf(pp, t.rev), Reason: ReasonUpdating, Message: "rollout " + rk + " revision " + revOf(pp, t.rev)}
			default:
				a = p.patch(r, pp, revOf(pp, t.rev)) // nothing to drain: patch at once
			}
			if p.try(a) {
				updates--
				if pp.ready {
					budget-- // an unready pod is already counted unavailable
				}
			}
		}
	}

	// Phase.
	switch {
	case len(mine) == 0 && len(conflicts) > 0:
		st.Phase = projections.PhasePending // every pod belongs to an older rollout
	case rollingBack && started == 0 && len(candidates) == 0: // FIX(test): not while pods wait to be rolled back
		st.Phase = projections.PhaseRolledBack
		conds.set("RollingBack", "False", "RolledBack", "updated pods were rolled back to their recorded images")
	case rollingBack && failed > 0 && started == failed && len(candidates) == 0:
		// Everything that could be rolled back was; the rest does not
		// verify on its recorded images either. A dead end, said so,
		// rather than Progressing forever.
		st.Phase = projections.PhaseFailed
		conds.set("Failed", "True", "RollbackFailed", fmt.Sprintf("%d pods did not verify on their recorded images either; first: %s. They were released from the gate: repair them by hand, or change the target", failed, failedWhy))
	case rollingBack:
		st.Phase = projections.PhaseProgressing
	case diverged > 0:
		st.Phase = projections.PhaseFailed
	case failing || spec.Paused || hold:
		st.Phase = projections.PhasePaused
	// FIX(test): Succeeded also needs the updated pods ready (a recreated
	// pod still starting was reported Succeeded), and never while pods of
	// the target are left to an older rollout (a rollout whose every pod
	// was claimed by another reported Succeeded with 0/0 updated).
	case done >= maxUpdated && started == 0 && blocked == 0 && int(st.UpdatedReady) == done && len(conflicts) > 0:
		st.Phase = projections.PhasePending
	case done >= maxUpdated && started == 0 && blocked == 0 && int(st.UpdatedReady) == done:
		st.Phase = projections.PhaseSucceeded
	// FIX(test): pods that cannot be changed in place (or are skipped for
	// want of the readiness gate), with nothing else left to do, is a dead
	// end: Failed, not Progressing forever.
	case blocked+skipped > 0 && started == 0 && len(candidates) == 0:
		st.Phase = projections.PhaseFailed
	default:
		st.Phase = projections.PhaseProgressing
	}
	if rolledBack {
		st.Phase = projections.PhaseRolledBack
	}
	if rollingBack && st.Phase == projections.PhaseFailed {
		// Nothing will drive these pods any more: no pod stays gated.
		for _, pp := range plans {
			key := pp.pod.Key()
			if pp.stage == stageFailed && pp.gated && !p.busy[key] && p.s.Pending[key] == nil {
				p.try(Action{Kind: Ungate, Pod: key, UID: pp.pod.UID, Rollout: rk, Reason: ReasonReady, Message: "released: its rollback did not verify either"})
			}
		}
	}
	conds.set("Paused", boolStatus(st.Phase == projections.PhasePaused), pauseReason(spec, hold, failing), pauseMessage(spec, hold, failing, step, st.ApprovedStepsBase))
}

// recreatedForTarget: the pod was made for the rollout's target, by its
// workload from the target revision, or as the replacement of a pod this
// rollout recreated for this revision.
func (p *planning) recreatedForTarget(pod *projections.Pod, rk string, t target) bool {
	if t.label != "" && pod.Labels[RevisionLabel] == t.label {
		return true
	}
	rc, ok := p.s.Recreated[pod.Key()]
	return ok && rc.Rollout == rk && rc.Revision == t.rev && rc.UID != pod.UID
}

// event records an Event on the rollout once per reason and message.
func (p *planning) event(r *projections.Rollout, typ, reason, msg string) {
	a := Action{Kind: Event, Rollout: r.Key(), RolloutUID: r.UID, EventType: typ, Reason: reason, Message: msg}
	if !p.s.Emitted[a.Key()] {
		p.add(a)
	}
}

// pauseMessage says what holds a paused rollout and how to release it.
// FIX(test): the Paused condition had no message; it also makes the Event
// of each step's pause distinct (events are deduplicated by message, so the
// second step's pause recorded none).
func pauseMessage(spec projections.RolloutSpec, hold, failing bool, step, base int32) string {
	switch {
	case spec.Paused:
		return "spec.paused is true"
	case failing:
		return "an update failed: see the Failed condition"
	case hold && int(step) < len(spec.Strategy.Steps):
		s := spec.Strategy.Steps[step]
		if s.Pause != nil {
			return fmt.Sprintf("step %d (%d%%) is done: set spec.approvedSteps to %d to continue", step, s.Percent, base+step+1)
		}
		if s.PauseSeconds != nil {
			return fmt.Sprintf("step %d (%d%%) is done: pausing %ds before the next step", step, s.Percent, *s.PauseSeconds)
		}
	}
	return ""
}

// revOf is the revision a pod's actions move it toward.
// FIX(test): the pod's target revision as classified ("rb-<rev>" for the
// whole of a rollback); it used to return the forward revision for a
// rollback's gate, before the rollback patch had recorded "rb-<rev>".
func revOf(pp *podPlan, rev string) string {
	if pp.rev != "" {
		return pp.rev
	}
	return rev
}

// stalled says why a pod's next write for its target revision will not be
// retried, or "".
func (p *planning) stalled(pp *podPlan) string {
	if len(p.s.Failures) == 0 {
		return "" // the common case: no key to build five times per pod
	}
	for _, k := range []ActionKind{Gate, Patch, Resize, Ungate, Recreate} {
		a := Action{Kind: k, Pod: pp.pod.Key(), UID: pp.pod.UID, Revision: revOf(pp, pp.rev)}
		if ok, why := p.allowed(a); !ok && why != "" {
			return fmt.Sprintf("%s failed (%s): %s", k, p.s.Failures[a.Key()].Class, why)
		}
	}
	return ""
}

// try adds an action unless its failure history says to wait or stop;
// it reports whether the action was added.
func (p *planning) try(a Action) bool {
	ok, _ := p.allowed(a)
	if ok {
		p.add(a)
	}
	return ok
}

// patch builds the one JSON patch of a pod: images, labels and the state
// annotation recording what it replaces.
func (p *planning) patch(r *projections.Rollout, pp *podPlan, rev string) Action {
	st := PodState{Rollout: r.Key(), Revision: rev, PatchedAt: p.now, Before: pp.before, Label: pp.oldLabel}
	raw, _ := json.Marshal(st) // a struct of strings and numbers always encodes
	var labels map[string]string
	if len(pp.labels) > 0 {
		labels = pp.labels
	}
	var annotations map[string]string
	if len(pp.annotations) > 0 {
		annotations = pp.annotations
	}
	return Action{
		Kind: Patch, Pod: pp.pod.Key(), UID: pp.pod.UID, Rollout: r.Key(), Revision: rev,
		Images: pp.images, Labels: labels, State: string(raw),
		RemoveLabels: pp.removeLabels, Annotations: annotations, RemoveAnnotations: pp.removeAnnotations,
		CreateAnnotations: !pp.pod.HasAnnotations, CreateLabels: len(pp.pod.Labels) == 0 && len(labels) > 0,
	}
}

// rollbackTarget is the pod's recorded pre-update state, for a pod this
// rollout updated; a pod already rolled back targets what it runs.
func rollbackTarget(pod *projections.Pod, rev string) (podTarget, bool) {
	st := readState(pod)
	if st == nil {
		return podTarget{}, false
	}
	switch st.Revision {
	case rev:
		pt := podTarget{rev: "rb-" + rev, label: st.Label}
		for _, b := range st.Before {
			pt.containers = append(pt.containers, want{Name: b.Name, Init: b.Init, Image: b.Image})
		}
		return pt, true
	case "rb-" + rev:
		pt := podTarget{rev: st.Revision, label: pod.Labels[RevisionLabel]}
		for _, b := range st.Before {
			if c, _ := findContainer(pod.Pod, b.Name, b.Init); c != nil {
				pt.containers = append(pt.containers, want{Name: b.Name, Init: b.Init, Image: c.Image})
			}
		}
		return pt, true
	}
	return podTarget{}, false
}

// steps returns how many pods may be updated now, whether a pause holds the
// rollout, and the current step.
func (p *planning) steps(spec projections.RolloutSpec, st *projections.RolloutStatus, replicas, maxUpdated, done int) (capNow int, hold bool, step int32) {
	if len(spec.Strategy.Steps) == 0 {
		return maxUpdated, false, 0
	}
	for i, s := range spec.Strategy.Steps {
		capI := min(ceilPercent(s.Percent, replicas), maxUpdated)
		if done < capI {
			st.StepPausedAt = nil
			return capI, false, int32(i)
		}
		if i == len(spec.Strategy.Steps)-1 {
			break
		}
		switch {
		case s.Pause != nil && spec.ApprovedSteps-st.ApprovedStepsBase <= int32(i):
			return capI, true, int32(i)
		case s.PauseSeconds != nil && st.CurrentStep > int32(i):
			// FIX(test): this step's pause is over (the rollout moved past
			// it); re-entering it restarted the pause from now, and the
			// rollout went back and forth between the two steps forever.
		case s.PauseSeconds != nil:
			since := p.now
			if st.CurrentStep == int32(i) && st.StepPausedAt != nil {
				since = st.StepPausedAt.UnixNano()
			} else {
				st.StepPausedAt = timeAt(p.now)
			}
			if end := since + int64(*s.PauseSeconds)*1e9; p.now < end {
				p.wake(end)
				return capI, true, int32(i)
			}
		}
	}
	st.StepPausedAt = nil
	return maxUpdated, false, int32(len(spec.Strategy.Steps) - 1)
}

func pauseReason(spec projections.RolloutSpec, hold, failing bool) string {
	switch {
	case spec.Paused:
		return "SpecPaused"
	case failing:
		return "VerifyFailed"
	case hold:
		return "StepPause"
	}
	return "Running"
}

func boolStatus(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func firstN(s []string, n int) string {
	if len(s) > n {
		return fmt.Sprintf("%v and %d more", s[:n], len(s)-n)
	}
	return fmt.Sprintf("%v", s)
}

func anyHas(pods []*projections.Pod, name string) bool {
	for _, p := range pods {
		if c, _ := findContainer(p.Pod, name, false); c != nil {
			return true
		}
		if c, _ := findContainer(p.Pod, name, true); c != nil {
			return true
		}
	}
	return false
}
