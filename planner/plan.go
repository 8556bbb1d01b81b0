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

// allowed says whether an action key may run now given its failures, and
// until when to wait otherwise. Conflicts replan at once (the state they
// conflicted with is new), but not forever.
func (p *planning) allowed(key string) (ok bool, reason string) {
	f := p.s.Failures[key]
	if f == nil {
		return true, ""
	}
	switch f.Class {
	case "invalid", "gone":
		return false, f.Error
	case "conflict", "abandoned":
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
		CurrentStep:        r.Status.CurrentStep,
		StepPausedAt:       r.Status.StepPausedAt,
	}
	conds := newConditions(r.Status.Conditions, p.now)
	t, problem, notFound := resolveTarget(p.s, r)
	if problem == "" {
		var pods []*projections.Pod
		pods, problem = selectPods(p.s, r, t)
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
	}
	var plans []*podPlan
	for _, pod := range mine {
		pt := podTarget{rev: t.rev, containers: t.containers, label: t.label, templateLabels: t.templateLabels, podSpecHash: t.podSpecHash, canRecreate: t.workload != nil}
		if rollingBack {
			var ok bool
			if pt, ok = rollbackTarget(pod, t.rev); !ok {
				continue // never touched by this rollout: nothing to undo
			}
		}
		if pod.Pod.NodeName == "" && pod.Pod.Phase == "Pending" {
			st.Replicas++
			st.Unavailable++
			continue // not scheduled: nothing to update in place yet
		}
		plans = append(plans, classify(pod, pt, spec, p.now))
	}
	st.Replicas += int32(len(plans))
	replicas := int(st.Replicas)

	// Count.
	var done, started, failed, blocked, skipped, noGate, unavailable int
	var failedWhy, blockedWhy string
	for _, pp := range plans {
		pending := p.s.Pending[pp.pod.Key()]
		if !pp.ready || pp.gated || pp.pod.Deleting != 0 || (pending != nil && (pending.Kind == string(Gate) || pending.Kind == string(Recreate))) {
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
	if blocked > 0 {
		msg := fmt.Sprintf("%d pods need changes that cannot be made in place and fallback is Never (or there is no template to recreate from); first: %s", blocked, blockedWhy)
		conds.set("NotInPlace", "True", "FallbackNever", msg)
	} else {
		conds.set("NotInPlace", "False", "InPlace", "")
	}

	// Budgets.
	maxUnavailable, err := scaled(spec.Strategy.MaxUnavailable, replicas, 1, false)
	if err != nil {
		conds.set("Invalid", "True", "InvalidSpec", "spec.strategy.maxUnavailable "+err.Error())
		st.Phase = projections.PhaseFailed
		return
	}
	maxUnavailable = max(maxUnavailable, 1)
	partition, err := scaled(spec.Strategy.Partition, replicas, 0, true)
	if err != nil {
		conds.set("Invalid", "True", "InvalidSpec", "spec.strategy.partition "+err.Error())
		st.Phase = projections.PhaseFailed
		return
	}
	maxUpdated := max(replicas-partition, 0)
	capNow, hold, step := p.steps(spec, st, replicas, maxUpdated, done)
	st.CurrentStep = step

	failing := failed > 0 && !rollingBack
	if failing {
		conds.set("Failed", "True", "VerifyTimeout", fmt.Sprintf("%d pods did not verify within %ds; first: %s. Fix the image (a new spec revision re-plans gated pods) or set strategy.onFailure: Rollback",
			failed, verifyTimeout(spec)/1e9, failedWhy))
		if spec.Strategy.OnFailure == "Rollback" {
			conds.set("RollingBack", "True", "VerifyTimeout", "rolling updated pods back in place to their recorded images")
		}
	} else if !rollingBack && r.Status.TargetRevision == t.rev && conds.is("Failed") && failed == 0 {
		conds.set("Failed", "False", "Recovered", "")
	}
	allowance := min(capNow-done-started, maxUnavailable-unavailable)
	switch {
	case rollingBack:
		// Undoing is not bound by steps or partition, only by availability.
		allowance = maxUnavailable - unavailable
	case spec.Paused || hold || failing:
		allowance = 0
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
			if (spec.Paused || failing) && !rollingBack {
				// Nothing will drive a gated, unpatched pod while paused:
				// give it back to its Service.
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
		case stageIdle, stageRecreate:
			candidates = append(candidates, pp)
		}
	}
	if allowance > 0 {
		for _, pp := range order(p.s, spec, candidates) {
			if allowance <= 0 {
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
			if p.try(a) && pp.ready {
				allowance-- // an unready pod is already counted unavailable
			}
		}
	}

	// Phase.
	switch {
	case rollingBack && started == 0:
		st.Phase = projections.PhaseRolledBack
		conds.set("RollingBack", "False", "RolledBack", "updated pods were rolled back to their recorded images")
	case rollingBack:
		st.Phase = projections.PhaseProgressing
	case failing || spec.Paused || hold:
		st.Phase = projections.PhasePaused
	case done >= maxUpdated && started == 0 && blocked == 0:
		st.Phase = projections.PhaseSucceeded
	default:
		st.Phase = projections.PhaseProgressing
	}
	if r.Status.Phase == projections.PhaseRolledBack && r.Status.TargetRevision == t.rev {
		st.Phase = projections.PhaseRolledBack
	}
	conds.set("Paused", boolStatus(st.Phase == projections.PhasePaused), pauseReason(spec, hold, failing), "")
}

func revOf(pp *podPlan, rev string) string {
	if pp.state != nil && pp.state.Revision == "rb-"+rev {
		return "rb-" + rev
	}
	return rev
}

// try adds an action unless its failure history says to wait or stop;
// it reports whether the action was added.
func (p *planning) try(a Action) bool {
	ok, _ := p.allowed(a.Key())
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
	return Action{
		Kind: Patch, Pod: pp.pod.Key(), UID: pp.pod.UID, Rollout: r.Key(), Revision: rev,
		Images: pp.images, Labels: labels, State: string(raw),
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
		case s.Pause != nil && spec.ApprovedSteps <= int32(i):
			return capI, true, int32(i)
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
