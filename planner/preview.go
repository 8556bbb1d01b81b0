package planner

import (
	"fmt"

	"rollbook.dev/rollbook/projections"
)

// PodPreview is one pod's place in a dry run.
type PodPreview struct {
	Pod  string
	Node string
	// Batch is the wave the pod is updated in (1-based); 0 when it is not
	// updated (already done, partition, blocked).
	Batch int
	Step  int
	// Action is what happens to it first: gate, patch, recreate, or "".
	Action string
	// Stage and Why say where it stands and why it is (not) in a batch.
	Stage, Why string
}

// PreviewResult is a dry run of one rollout over the current state.
type PreviewResult struct {
	Rollout                   string
	Revision                  string
	Problem                   string // non-empty: the rollout would not run, and why
	Replicas, MaxUnavailable  int
	Partition, AlreadyUpdated int
	Pods                      []PodPreview
	Conflicts                 []string
}

// Preview says which pods a rollout would update in which batch, in the
// order the planner would take them (priority, scatter), bounded by
// maxUnavailable, steps and partition, assuming every update succeeds. It
// writes nothing and reads nothing but s.
func Preview(s *projections.State, rolloutKey string) PreviewResult {
	r := s.Rollouts[rolloutKey]
	res := PreviewResult{Rollout: rolloutKey}
	if r == nil {
		res.Problem = "no such rollout in the state"
		return res
	}
	t, problem, _ := resolveTarget(s, r)
	if problem != "" {
		res.Problem = problem
		return res
	}
	res.Revision = t.rev
	pods, problem := selectPods(s, r, t)
	if problem != "" {
		res.Problem = problem
		return res
	}
	// Pods an older rollout claims are left to it.
	older := map[string]string{}
	for _, o := range rolloutsByAge(s) {
		if o == r {
			break
		}
		if ot, prob, _ := resolveTarget(s, o); prob == "" && o.Deleting == 0 {
			if ops, prob := selectPods(s, o, ot); prob == "" {
				for _, p := range ops {
					older[p.Key()] = o.Key()
				}
			}
		}
	}
	spec := r.Spec
	var plans []*podPlan
	for _, pod := range pods {
		if owner, ok := older[pod.Key()]; ok {
			res.Conflicts = append(res.Conflicts, pod.Name+" (claimed by "+owner+")")
			continue
		}
		pt := t.forPod(s, pod)
		plans = append(plans, classify(pod, pt, spec, s.Now))
	}
	res.Replicas = len(plans)
	maxUnavailable, err := scaled(spec.Strategy.MaxUnavailable, res.Replicas, 1, false)
	if err != nil {
		res.Problem = "spec.strategy.maxUnavailable " + err.Error()
		return res
	}
	maxUnavailable = max(maxUnavailable, 1)
	partition, err := scaled(spec.Strategy.Partition, res.Replicas, 0, true)
	if err != nil {
		res.Problem = "spec.strategy.partition " + err.Error()
		return res
	}
	res.MaxUnavailable, res.Partition = maxUnavailable, partition
	maxUpdated := max(res.Replicas-partition, 0)
	caps := []int{maxUpdated}
	if len(spec.Strategy.Steps) > 0 {
		caps = caps[:0]
		for _, st := range spec.Strategy.Steps {
			caps = append(caps, min(ceilPercent(st.Percent, res.Replicas), maxUpdated))
		}
		caps[len(caps)-1] = maxUpdated
	}
	var candidates []*podPlan
	updated := 0
	for _, pp := range plans {
		pv := PodPreview{Pod: pp.pod.Key(), Node: pp.pod.Pod.NodeName, Stage: pp.stage.String(), Why: pp.why}
		switch pp.stage {
		case stageIdle, stageRecreate:
			candidates = append(candidates, pp)
			continue
		case stageDone:
			updated++
			res.AlreadyUpdated++
			pv.Why = "already at the target"
		case stageBlocked, stageSkipped:
		default:
			updated++
			pv.Why = "update under way: " + pp.why
		}
		res.Pods = append(res.Pods, pv)
	}
	batch, inBatch, step := 0, maxUnavailable, -1
	for _, pp := range order(s, spec, candidates) {
		pv := PodPreview{Pod: pp.pod.Key(), Node: pp.pod.Pod.NodeName, Stage: pp.stage.String()}
		if updated >= maxUpdated {
			pv.Why = fmt.Sprintf("stays on its current version: partition keeps %d pods", partition)
			res.Pods = append(res.Pods, pv)
			continue
		}
		i := 0
		for i < len(caps)-1 && updated >= caps[i] {
			i++
		}
		if i != step || inBatch == maxUnavailable {
			batch++
			inBatch = 0
			if i != step && step >= 0 {
				pv.Why = stepNote(spec, step)
			}
			step = i
		}
		inBatch++
		updated++
		pv.Batch, pv.Step = batch, step
		switch {
		case pp.stage == stageRecreate:
			pv.Action, pv.Why = "recreate", joinWhy(pv.Why, pp.why)
		case pp.hasGate && !pp.skipDrain:
			pv.Action = "gate"
		default:
			pv.Action = "patch"
			pv.Why = joinWhy(pv.Why, "patched at once: nothing to drain")
		}
		res.Pods = append(res.Pods, pv)
	}
	return res
}

func stepNote(spec projections.RolloutSpec, step int) string {
	s := spec.Strategy.Steps[step]
	switch {
	case s.Pause != nil:
		return fmt.Sprintf("after step %d (%d%%) the rollout pauses until spec.approvedSteps > %d", step, s.Percent, step)
	case s.PauseSeconds != nil:
		return fmt.Sprintf("after step %d (%d%%) the rollout pauses %ds", step, s.Percent, *s.PauseSeconds)
	}
	return fmt.Sprintf("step %d (%d%%) done", step, s.Percent)
}

func joinWhy(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
