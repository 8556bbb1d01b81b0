package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

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
	s   *projections.State
	now int64
	res Result
	// processed holds the rollouts planned or reused so far in this
	// plan: a claim (Incremental.claims) counts only once its rollout is
	// (see claimOf).
	processed  map[string]bool
	busy       map[string]bool     // pod key → has an action in this plan
	keys       []string            // every pod key, sorted (a full plan)
	failedPods map[string]bool     // see failedPod
	owners     map[string][]string // owner UID → sorted pod keys (ownedBy)

	// inc is the planner whose caches this plan fills; unit the rollout
	// being planned; touched, in a partial plan, what changed.
	inc     *Incremental
	unit    *unit
	touched *projections.Touched
	// changed: pods whose claimant changed so far in this plan.
	changed map[string]bool
}

// Plan derives the actions for state s at s.Now, planning everything: the
// definition Incremental is held to.
func Plan(s *projections.State) Result {
	return NewIncremental().Plan(s, nil)
}

func (p *planning) add(a Action) {
	if a.Pod != "" {
		p.busy[a.Pod] = true
	}
	p.res.Actions = append(p.res.Actions, a)
}

func (p *planning) wake(at int64) {
	if at <= p.now {
		return
	}
	if p.res.WakeAt == 0 || at < p.res.WakeAt {
		p.res.WakeAt = at
	}
	if u := p.unit; u != nil && (u.wake == 0 || at < u.wake) {
		u.wake = at
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
	// A status write's key names only the rollout and its content is
	// recomputed every plan: it is always retried, with backoff, or the
	// rollout's status would freeze at the first refusal.
	case a.Kind == Status && (f.Class == "invalid" || f.Class == "gone"):
	case f.Class == "invalid", f.Class == "gone":
		return false, f.Error
	case f.Class == "conflict", f.Class == "abandoned":
		if f.Count >= 5 {
			return false, fmt.Sprintf("%d conflicts in a row: %s", f.Count, f.Error)
		}
		return true, ""
	case f.Class == "other" && f.Count >= 5:
		// A refusal nobody classified (RBAC, an admission webhook or policy
		// denying the write) that five tries with backoff did not change.
		return false, fmt.Sprintf("%d failures in a row: %s", f.Count, f.Error)
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
	if r.Spec.Abort {
		p.aborted(r)
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
	conds.set("Aborted", "False", "Resumed", "")
	t, problem, notFound := resolveTarget(p.s, r)
	if t.bases != nil {
		t.kept = p.inc.keptBases()
	}
	if problem == "" && (t.workload == nil || t.workload.Workload.ObservedGeneration >= t.workload.Generation && t.to != nil) &&
		p.rolloutFast(r, t, &st, conds) {
		p.finishStatus(r, &st, conds)
		return
	}
	if problem == "" {
		var pods []*projections.Pod
		pods, problem = p.podsOf(r, t)
		p.selected(pods)
		if problem == "" && t.workload != nil && (t.workload.Workload.ObservedGeneration < t.workload.Generation || t.to == nil) {
			// NB: the workload's controller has not yet observed its new
			// template, so its update revision (the label pods must carry)
			// is the old one; or the target revision's ControllerRevision
			// has not come on its watch yet. Planning now would patch pods
			// toward a target that changes a moment later, and patch them a
			// second time. Hold, keeping the pods claimed: the records that
			// end the wait wake the planner.
			for _, pod := range pods {
				if owner, ok := p.claimOf(pod.Key()); !ok || owner == r.Key() {
					p.claim(pod.Key(), r.Key())
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

// recreatedForTarget: the pod was made for the rollout's target, by its
// workload from the target revision, or as the replacement of a pod this
// rollout recreated for this revision.
func (p *planning) recreatedForTarget(pod *projections.Pod, rk string, t target) bool {
	if t.label != "" && pod.Label(RevisionLabel) == t.label {
		return true
	}
	rc, ok := p.s.Recreated[pod.Key()]
	return ok && rc.Rollout == rk && rc.Revision == t.rev && !pod.UID.IsText(rc.UID)
}

// event records an Event on the rollout once per reason and message.
func (p *planning) event(r *projections.Rollout, typ, reason, msg string) {
	a := Action{Kind: Event, Rollout: r.Key(), RolloutUID: r.UID, EventType: typ, Reason: reason, Message: msg}
	if !p.s.Emitted[a.Key()] {
		p.add(a)
	}
}

// pauseMessage says what holds a paused rollout and how to release it.
// The message also tells one step's pause from the next: Events are
// recorded once per message.
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
// It is the pod's target revision as classified: "rb-<rev>" for every
// action of a rollback, its gate included.
func revOf(pp *podPlan, rev string) string {
	if pp.rev != "" {
		return pp.rev
	}
	return rev
}

// stalled says why a pod's next write for its target revision will not be
// retried, or "".
func (p *planning) stalled(pp *podPlan) string {
	if len(p.s.Failures) == 0 || !p.failedPod(pp.pod.Key()) {
		return "" // the common case: no key to build five times per pod
	}
	for _, k := range []ActionKind{Gate, Patch, Resize, Ungate, Recreate} {
		a := Action{Kind: k, Pod: pp.pod.Key(), UID: pp.pod.UID.String(), Revision: revOf(pp, pp.rev)}
		if ok, why := p.allowed(a); !ok && why != "" {
			return fmt.Sprintf("%s failed (%s): %s", k, p.s.Failures[a.Key()].Class, why)
		}
	}
	return ""
}

// failedPod: some action on pod k has failed and not succeeded since.
// The pods are found from the failures' keys once per plan: a failure
// left by a pod long gone would otherwise make stalled build five keys
// for every pod of every rollout, on every plan.
func (p *planning) failedPod(k string) bool {
	if p.failedPods == nil {
		p.failedPods = map[string]bool{}
		for key := range p.s.Failures {
			if pod, ok := podOfKey(key); ok {
				p.failedPods[pod] = true
			}
		}
	}
	return p.failedPods[k]
}

// podOfKey is the pod a pod action's key names (Action.Key:
// "kind/namespace/name/uid/revision"); false for other actions' keys.
func podOfKey(key string) (string, bool) {
	kind, rest, _ := strings.Cut(key, "/")
	switch ActionKind(kind) {
	case Gate, Patch, Resize, Ungate, Recreate:
		ns, rest, _ := strings.Cut(rest, "/")
		name, _, _ := strings.Cut(rest, "/")
		return ns + "/" + name, true
	}
	return "", false
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
func (p *planning) patch(rp *rolloutPlan, pp *podPlan, rev string) Action {
	r := rp.r
	// A patched pod was classified against this target (a kept
	// classification only under the same one), so it is found again.
	t, _ := p.podTarget(rp, pp.pod)
	st := projections.NewPodState(r.Key(), rev, pp.pod.Label(RevisionLabel), p.now, before(pp.pod.Pod, t))
	raw := st.JSON()
	var labels map[string]string
	if len(pp.labels) > 0 {
		labels = pp.labels
	}
	var annotations map[string]string
	rare := pp.rarely()
	if len(rare.annotations) > 0 {
		annotations = rare.annotations
	}
	return Action{
		Kind: Patch, Pod: pp.pod.Key(), UID: pp.pod.UID.String(), Rollout: r.Key(), Revision: rev,
		Images: pp.imageChanges(), Labels: labels, State: raw,
		RemoveLabels: rare.removeLabels, Annotations: annotations, RemoveAnnotations: rare.removeAnnotations,
		CreateAnnotations: !pp.pod.HasAnnotations, CreateLabels: !pp.pod.HasLabels() && len(labels) > 0,
	}
}

// rollbackTarget is the pod's recorded pre-update state, for a pod this
// rollout updated; a pod already rolled back targets what it runs.
func rollbackTarget(pod *projections.Pod, rev string) (podTarget, bool) {
	st := readState(pod)
	if st == nil {
		return podTarget{}, false
	}
	switch st.Revision() {
	case rev:
		pt := podTarget{rev: "rb-" + rev, label: st.Label()}
		for b := range st.Before() {
			pt.containers = append(pt.containers, want{Name: b.Name, Init: b.Init, Image: b.Image})
		}
		return pt, true
	case "rb-" + rev:
		pt := podTarget{rev: st.Revision(), label: pod.Label(RevisionLabel)}
		for b := range st.Before() {
			if c, _ := findContainer(pod.Pod, b.Name, b.Init); c != nil {
				pt.containers = append(pt.containers, want{Name: b.Name, Init: b.Init, Image: c.Image})
			}
		}
		return pt, true
	}
	return podTarget{}, false
}

// steps returns how many pods may be updated now, whether a pause holds the
// rollout, and the current step. A step's analysis runs once its pods are
// done, beside its pause: the rollout goes past the step when both allow
// (rp.analyzing and rp.analysisFailed say what the analysis does).
func (p *planning) steps(rp *rolloutPlan, replicas, maxUpdated, done int) (capNow int, hold bool, step int32) {
	spec, st := rp.spec, rp.st
	if rp.rollingBack || rp.rolledBack {
		st.Analysis = rp.r.Status.Analysis // the evidence for the rollback stays in view
	}
	if len(spec.Strategy.Steps) == 0 {
		return maxUpdated, false, 0
	}
	for i, s := range spec.Strategy.Steps {
		capI := min(ceilPercent(s.Percent, replicas), maxUpdated)
		if done < capI {
			st.StepPausedAt = nil
			return capI, false, int32(i)
		}
		approved := spec.ApprovedSteps-st.ApprovedStepsBase > int32(i)
		if s.Analysis != nil && approved {
			rp.promoted = int32(i)
		}
		if s.Analysis != nil && !approved && !rp.rollingBack && !rp.rolledBack {
			st.Analysis = p.analyze(rp, int32(i), s.Analysis)
			switch st.Analysis.Phase {
			case projections.AnalysisFailed:
				rp.analysisFailed = analysisFailure(st.Analysis, spec.Strategy.OnFailure)
				st.StepPausedAt = nil
				return capI, false, int32(i)
			case projections.AnalysisRunning:
				rp.analyzing = true
			}
		}
		if i == len(spec.Strategy.Steps)-1 {
			break
		}
		switch {
		case s.Pause != nil && !approved:
			return capI, true, int32(i)
		case s.PauseSeconds != nil && st.CurrentStep > int32(i):
			// This step's pause is over: the rollout moved past it, and
			// never re-enters a pause it served.
		case s.PauseSeconds != nil:
			since := p.now
			if st.CurrentStep == int32(i) && st.StepPausedAt != nil {
				since = st.StepPausedAt.UnixNano()
			} else {
				st.StepPausedAt = timeAt(p.now)
				// Until that status is written and seen, the pause ends
				// PauseSeconds after whenever the rollout is planned.
				p.volatile()
			}
			if end := since + int64(*s.PauseSeconds)*1e9; p.now < end {
				p.wake(end)
				return capI, true, int32(i)
			}
		}
		if rp.analyzing {
			return capI, false, int32(i)
		}
	}
	st.StepPausedAt = nil
	return maxUpdated, false, int32(len(spec.Strategy.Steps) - 1)
}

func pauseReason(spec projections.RolloutSpec, hold bool, stop string) string {
	switch {
	case spec.Paused:
		return "SpecPaused"
	case stop != "":
		return stop
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

// missingContainer returns the first container spec names that none of
// pods has, or "" (and "" for no pods: nothing to tell a typo by).
func missingContainer(spec projections.RolloutSpec, pods []*projections.Pod) string {
	if len(pods) == 0 {
		return ""
	}
	for _, ct := range spec.Containers {
		if !anyHas(pods, ct.Name) {
			return ct.Name
		}
	}
	return ""
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
