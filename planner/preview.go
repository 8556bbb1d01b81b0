package planner

import (
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// PodPreview is one pod's place in a dry run.
type PodPreview struct {
	Pod  string
	Node string
	// Batch is the wave the pod is updated in (1-based); 0 when it is not
	// updated (already done, partition, blocked).
	Batch int
	// Step is the rollout's current step when the pod starts.
	Step int
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
	// Pods lists the pods that start, in the order they start, then the
	// others by key.
	Pods      []PodPreview
	Conflicts []string
}

// Preview says which pods a rollout would update in which batch, and why,
// if every action succeeded at once. It is derived from Plan, never a
// second copy of its policy: it plans a private copy of s, carries out every
// action there as the apiserver, the workload's controller and the kubelet
// would if nothing failed or took time, and plans again, until the rollout
// ends or nothing is left to do. A batch is a plan round that starts pods of
// the rollout (gates one, recreates one, or patches one not gated).
//
// What a user would do to let the rollout go on is done in the copy:
// spec.paused is taken as false, a step's `pause: {}` is approved once the
// rollout waits on it, a lifecycle hook releases a pod as soon as it is
// marked, and time jumps to each wake-up (grace periods, pauseSeconds,
// backoffs). Other rollouts run alongside, as they would.
// s is never written.
//
// NB: nothing takes time in the copy. In a cluster where some restarts are
// slower than others, pods of consecutive batches may start together. And
// each round is a Plan of the whole state: about four per batch.
func Preview(s *projections.State, rolloutKey string) PreviewResult {
	res := PreviewResult{Rollout: rolloutKey}
	r := s.Rollouts[rolloutKey]
	if r == nil {
		res.Problem = "no such rollout in the state"
		return res
	}
	t, problem, _ := resolveTarget(s, r)
	var pods []*projections.Pod
	if problem == "" {
		pods, problem = selectPods(s, r, t)
	}
	if problem == "" && t.workload != nil && (t.to == nil || t.workload.Workload.ObservedGeneration < t.workload.Generation) {
		problem = fmt.Sprintf("%s %s's current template has no observed ControllerRevision yet (its controller has not published it): plan again once it has",
			t.workload.Workload.Kind, t.workload.Name)
	}
	if problem != "" {
		res.Problem = problem
		return res
	}
	res.Revision = t.rev

	d := newDryRun(s, rolloutKey)
	d.run()
	if c := condition(d.first.Conditions, "Invalid"); c != nil && c.Status == metav1.ConditionTrue {
		res.Problem = c.Message
		return res
	}
	res.Replicas = int(d.first.Replicas)
	res.MaxUnavailable, _ = scaled(r.Spec.Strategy.MaxUnavailable, res.Replicas, 1, false)
	res.MaxUnavailable = max(res.MaxUnavailable, 1)
	res.Partition, _ = scaled(r.Spec.Strategy.Partition, res.Replicas, 0, true)

	// Where each pod stands comes from classify on s; whether and when it
	// starts, only from the plans.
	older := claimedByOlder(s, r)
	byKey := map[string]PodPreview{}
	var rest []PodPreview
	for _, pod := range pods {
		k := pod.Key()
		st := d.started[k]
		if owner, ok := older[k]; ok && st == nil {
			res.Conflicts = append(res.Conflicts, pod.Name+" (claimed by "+owner+")")
			continue
		}
		pv := PodPreview{Pod: k, Node: pod.Pod.NodeName}
		var pp *podPlan
		if pod.Pod.NodeName == "" && pod.Pod.Phase == "Pending" {
			pv.Stage = "unscheduled"
		} else {
			pp = classify(pod, t.forPod(s, pod), r.Spec, s.Now)
			pv.Stage = pp.stage.String()
			if pp.stage == stageDone {
				res.AlreadyUpdated++
			}
		}
		if st == nil {
			pv.Why = d.notStartedWhy(pod, pp, res.Partition)
			rest = append(rest, pv)
			continue
		}
		pv.Batch, pv.Step, pv.Action = st.batch, st.step, string(st.action)
		pv.Why = joinWhy(st.note, startWhy(st.action, pp))
		if r.Spec.Lifecycle != nil {
			pv.Why = joinWhy(pv.Why, "held by its lifecycle hooks until released (taken here as released at once)")
		}
		byKey[k] = pv
	}
	for _, k := range d.order {
		if pv, ok := byKey[k]; ok {
			res.Pods = append(res.Pods, pv)
		}
	}
	res.Pods = append(res.Pods, rest...)
	return res
}

// startWhy says how a pod starts.
func startWhy(a ActionKind, pp *podPlan) string {
	switch {
	case a == Patch:
		return "patched at once: nothing to drain"
	case a == Recreate && pp != nil && pp.why() != "":
		return "recreated, not updated in place: " + pp.why()
	}
	return ""
}

// notStartedWhy says why a pod of the rollout is in no batch, from where
// it stands in s and how the dry run ended.
func (d *dryRun) notStartedWhy(pod *projections.Pod, pp *podPlan, partition int) string {
	switch {
	case pp == nil:
		return "not scheduled: nothing runs to update in place until it is"
	case pod.Deleting != 0:
		return "terminating: its workload makes the replacement"
	}
	switch pp.stage {
	case stageDone:
		return "already at the target"
	case stageBlocked:
		return "cannot be updated in place and is not recreated (fallback Never, or no template to recreate from): " + pp.why()
	case stageSkipped:
		return "skipped: it does not declare readiness gate " + GateCondition + " and spec.requireReadinessGate is set"
	case stageIdle, stageRecreate:
	default:
		return joinWhy("update under way ("+pp.stage.String()+")", pp.why())
	}
	end := d.end
	switch {
	case end.Phase == projections.PhaseSucceeded && partition > 0:
		return fmt.Sprintf("stays on its current version: partition keeps %d pods", partition)
	case d.exhausted:
		return fmt.Sprintf("not reached within %d plan rounds", d.rounds)
	}
	why := "not started: the rollout ends " + orNone(end.Phase)
	if end.Phase == "" {
		why = "not started: the planner holds the rollout"
	}
	for _, typ := range []string{"Failed", "NotInPlace", "Stalled", "Conflict"} {
		if c := condition(end.Conditions, typ); c != nil && c.Status == metav1.ConditionTrue && c.Message != "" {
			return why + ": " + c.Message
		}
	}
	return why
}

// claimedByOlder maps the pods that older rollouts claim before r (as
// Plan's rollouts claim pods, oldest first) to the rollout claiming them.
func claimedByOlder(s *projections.State, r *projections.Rollout) map[string]string {
	older := map[string]string{}
	for _, o := range rolloutsByAge(s) {
		if o == r {
			break
		}
		if o.Deleting != 0 {
			continue
		}
		if ot, prob, _ := resolveTarget(s, o); prob == "" {
			if ops, prob := selectPods(s, o, ot); prob == "" {
				for _, p := range ops {
					if _, ok := older[p.Key()]; !ok {
						older[p.Key()] = o.Key()
					}
				}
			}
		}
	}
	return older
}

// dryRun is the private copy Preview plans and the starts it saw.
//
// Invariant: c shares nothing it writes with the original state. Its maps
// are its own from the start; a pod or rollout is copied the first time an
// action changes it (own), and from then on only c holds it. Container
// resource maps and label maps are replaced, never written into, unless
// the pod is owned.
type dryRun struct {
	c   *projections.State
	key string // the rollout previewed
	own map[string]bool
	// targets caches resolved targets per rollout key, for recreates.
	targets map[string]*target
	ids     int // containers and pods made, for their IDs

	started map[string]*start // by pod key
	order   []string          // pod keys in start order
	batches int
	// note waits for the next pod to start: what held the rollout before it.
	note  string
	noted map[int32]bool // steps whose pause was noted
	// analyzed: steps whose analysis was noted
	analyzed map[int32]bool
	// first is the rollout's status as the first plan computes it, end as
	// the last one left it; rounds is how many plans ran, exhausted whether
	// the bound stopped them.
	first, end projections.RolloutStatus
	rounds     int
	exhausted  bool
}

// start is one pod's start: the batch (plan round) and step, and the
// action.
type start struct {
	batch, step int
	action      ActionKind
	note        string
}

func newDryRun(s *projections.State, key string) *dryRun {
	c := s.Detached()
	c.Pods, c.Rollouts = maps.Clone(s.Pods), maps.Clone(s.Rollouts)
	c.Failures, c.Emitted, c.Recreated = maps.Clone(s.Failures), maps.Clone(s.Emitted), maps.Clone(s.Recreated)
	// A write in flight is taken as not landed: the planner derives it
	// again (every action is idempotent), and here it succeeds.
	c.Pending = map[string]*projections.Pending{}
	c.Analyses = map[string]*projections.AnalysisRun{}
	for k, run := range s.Analyses {
		checks := map[string]*projections.CheckRun{}
		for name, cr := range run.Checks {
			cp := *cr
			checks[name] = &cp
		}
		c.Analyses[k] = &projections.AnalysisRun{Checks: checks}
	}
	if c.Failures == nil {
		c.Failures = map[string]*projections.Failure{}
	}
	if c.Emitted == nil {
		c.Emitted = map[string]bool{}
	}
	if c.Recreated == nil {
		c.Recreated = map[string]projections.Recreation{}
	}
	d := &dryRun{c: &c, key: key, own: map[string]bool{}, targets: map[string]*target{}, started: map[string]*start{}, noted: map[int32]bool{}, analyzed: map[int32]bool{}}
	d.catchUp()
	if r := d.rollout(key); r != nil && r.Spec.Paused {
		r.Spec.Paused = false
		d.note = "once spec.paused is false"
	}
	return d
}

// catchUp is the kubelets acting at once on what s shows them behind on:
// a container whose spec image is not what runs is (re)started on it, and
// resources the spec changed are applied. From then on apply keeps every
// pod caught up.
func (d *dryRun) catchUp() {
	for _, k := range sortedPodKeys(d.c) {
		p := d.c.Pods[k]
		if p.Pod == nil || p.Pod.NodeName == "" || p.Deleting != 0 || !behind(p.Pod) {
			continue
		}
		p = d.pod(k, p.UID.String())
		for _, list := range [][]projections.Container{p.Pod.Containers, p.Pod.InitContainers()} {
			for i := range list {
				c := &list[i]
				if c.Image != "" && c.StatusImage != c.Image {
					if !c.ContainerID.IsZero() {
						c.RestartCount++
					}
					d.runContainer(p, c)
				}
				if !sameQuantities(c.ActualRequests, c.Requests) || !sameQuantities(c.ActualLimits, c.Limits) {
					c.ActualRequests, c.ActualLimits = maps.Clone(c.Requests), maps.Clone(c.Limits)
				}
			}
		}
		p.Pod.Phase = "Running"
		kubeletReady(p.Pod, d.c.Now)
	}
}

// behind: the kubelet has not yet run a container's spec image or applied
// its resources.
func behind(f *projections.Facts) bool {
	for _, list := range [][]projections.Container{f.Containers, f.InitContainers()} {
		for _, c := range list {
			if (c.Image != "" && c.StatusImage != c.Image) || !sameQuantities(c.ActualRequests, c.Requests) || !sameQuantities(c.ActualLimits, c.Limits) {
				return true
			}
		}
	}
	return false
}

// run plans and carries out until the rollout ends, nothing is left to do,
// or the bound is reached. The bound allows every pod several rounds (gate,
// grace, patch, ungate, a status) and every step its pause.
func (d *dryRun) run() {
	r := d.c.Rollouts[d.key]
	limit := 8*len(d.c.Pods) + 4*len(r.Spec.Strategy.Steps) + 64
	for d.rounds = 0; d.rounds < limit; {
		res := Plan(d.c)
		d.rounds++
		st := d.c.Rollouts[d.key].Status
		for _, a := range res.Actions {
			if a.Kind == Status && a.Rollout == d.key {
				st = *a.Status
			}
		}
		if d.rounds == 1 {
			d.first = st
		}
		d.record(res.Actions, st)
		for _, a := range res.Actions {
			d.apply(a)
		}
		cur := d.c.Rollouts[d.key]
		d.end = cur.Status
		d.notePause(cur)
		switch cur.Status.Phase {
		case projections.PhaseSucceeded, projections.PhaseFailed, projections.PhaseRolledBack:
			return
		}
		switch {
		case len(res.Actions) > 0:
		case d.approve(cur):
		case res.WakeAt != 0:
			d.c.Now = res.WakeAt
		default:
			return
		}
	}
	d.exhausted = true
}

// record notes the pods of the rollout that a plan starts: gated,
// recreated, or patched while not gated. Called before the actions are
// carried out, so "not gated" is as the plan saw the pod.
func (d *dryRun) record(actions []Action, st projections.RolloutStatus) {
	batch := 0
	for _, a := range actions {
		if a.Rollout != d.key || d.started[a.Pod] != nil {
			continue
		}
		switch a.Kind {
		case Gate, Recreate:
		case Patch:
			if c := gateCondition(d.c.Pods[a.Pod].Pod); c != nil && c.Status() == "False" && c.Reason() == ReasonUpdating {
				continue
			}
		default:
			continue
		}
		if batch == 0 {
			d.batches++
			batch = d.batches
		}
		d.started[a.Pod] = &start{batch: batch, step: int(st.CurrentStep), action: a.Kind, note: d.note}
		d.order = append(d.order, a.Pod)
		d.note = ""
	}
}

// heldAt is the step whose pause holds r, if one does.
func heldAt(r *projections.Rollout) (projections.Step, int32, bool) {
	st := r.Status
	c := condition(st.Conditions, "Paused")
	steps := r.Spec.Strategy.Steps
	if st.Phase != projections.PhasePaused || c == nil || c.Status != metav1.ConditionTrue || c.Reason != "StepPause" || int(st.CurrentStep) >= len(steps) {
		return projections.Step{}, 0, false
	}
	return steps[st.CurrentStep], st.CurrentStep, true
}

// notePause keeps what a step's pause means for the next pod to start.
func (d *dryRun) notePause(r *projections.Rollout) {
	s, i, ok := heldAt(r)
	if !ok || d.noted[i] {
		return
	}
	d.noted[i] = true
	switch {
	case s.Pause != nil:
		d.note = joinWhy(d.note, fmt.Sprintf("after step %d (%d%%) the rollout pauses until spec.approvedSteps is raised to %d", i, s.Percent, r.Status.ApprovedStepsBase+i+1))
	case s.PauseSeconds != nil:
		d.note = joinWhy(d.note, fmt.Sprintf("after step %d (%d%%) the rollout pauses %ds", i, s.Percent, *s.PauseSeconds))
	}
}

// approve raises spec.approvedSteps when the rollout waits for it.
func (d *dryRun) approve(r *projections.Rollout) bool {
	s, _, ok := heldAt(r)
	if !ok || s.Pause == nil {
		return false
	}
	d.rollout(d.key).Spec.ApprovedSteps++
	return true
}

// apply carries out one action in the copy as if it succeeded at once and
// its result were observed: the write, then what the kubelet or the
// workload's controller makes of it.
func (d *dryRun) apply(a Action) {
	delete(d.c.Failures, a.Key())
	switch a.Kind {
	case Event:
		d.c.Emitted[a.Key()] = true
	case Status:
		if r := d.rollout(a.Rollout); r != nil && r.UID == a.RolloutUID {
			r.Status = *a.Status
		}
	case Gate, Ungate:
		if p := d.pod(a.Pod, a.UID); p != nil {
			status := "False"
			if a.Kind == Ungate {
				status = "True"
			}
			setPodCondition(p.Pod, GateCondition, status, a.Reason, a.Message, d.c.Now)
			d.hookMarks(p, a)
			kubeletReady(p.Pod, d.c.Now)
		}
	case Patch:
		if p := d.pod(a.Pod, a.UID); p != nil {
			d.patch(p, a)
		}
	case Resize:
		if p := d.pod(a.Pod, a.UID); p != nil {
			for _, rc := range a.Resources {
				c, _ := findContainer(p.Pod, rc.Name, false)
				if c == nil {
					c, _ = findContainer(p.Pod, rc.Name, true)
				}
				if c != nil {
					c.Requests, c.Limits = maps.Clone(rc.Requests), maps.Clone(rc.Limits)
					c.ActualRequests, c.ActualLimits = maps.Clone(rc.Requests), maps.Clone(rc.Limits)
				}
			}
		}
	case Measure:
		// The dry run shows which pods go in which batch, not whether the
		// service stays healthy: every check passes at its first
		// measurement.
		if !d.analyzed[a.Step] {
			d.analyzed[a.Step] = true
			d.note = joinWhy(d.note, fmt.Sprintf("after step %d the analysis must pass (the dry run assumes it does)", a.Step))
		}
		passes := int32Or(a.Check.Passes, defaultPasses)
		d.c.Measured(journal.ActionFact{Kind: string(Measure), Rollout: a.Rollout, Revision: a.Revision, Measurement: &journal.Measurement{
			Check: a.Check.Name, Step: a.Step, Verdict: journal.VerdictPass, Value: "assumed",
		}}, d.c.Now)
		d.c.Analyses[projections.AnalysisKey(a.Rollout, a.Revision, a.Step)].Checks[a.Check.Name].Passes = passes
	case Recreate:
		if p := d.pod(a.Pod, a.UID); p != nil {
			d.replace(p, d.target(a.Rollout))
			d.c.Recreated[a.Pod] = projections.Recreation{Rollout: a.Rollout, Revision: a.Revision, UID: a.UID}
		}
	}
}

// hookMarks applies what a gate or ungate write does for lifecycle hooks
// (the marker set or removed, the release cleared) and then, as a hook
// controller that answers at once would, sets the release the rollout's
// hook names: the dry run does not wait on hooks.
func (d *dryRun) hookMarks(p *projections.Pod, a Action) {
	if len(a.Labels)+len(a.RemoveLabels)+len(a.ClearConditions) == 0 {
		return
	}
	l := ownLabels(p)
	for _, k := range a.RemoveLabels {
		delete(l, k)
	}
	maps.Copy(l, a.Labels)
	for _, c := range a.ClearConditions {
		setPodCondition(p.Pod, c, "False", ReasonHookWaiting, "", d.c.Now)
	}
	r := d.c.Rollouts[a.Rollout]
	if r == nil {
		return
	}
	var h *projections.LifecycleHook
	switch l[HookLabel] {
	case HookPreUpdate:
		h = preHook(r.Spec)
	case HookPostUpdate:
		h = postHook(r.Spec)
	}
	switch {
	case h == nil:
	case h.Label != nil:
		l[h.Label.Key] = h.Label.Value
	default:
		setPodCondition(p.Pod, h.Condition, "True", "DryRun", "", d.c.Now)
	}
}

// patch applies a JSON patch's changes and restarts the containers whose
// image it changed, each running and ready on its new image.
func (d *dryRun) patch(p *projections.Pod, a Action) {
	f := p.Pod
	for _, ch := range a.Images {
		list := f.Containers
		if ch.Init {
			list = f.InitContainers()
		}
		if ch.Index < len(list) && list[ch.Index].Name == ch.Name {
			c := &list[ch.Index]
			c.Image = ch.To
			d.runContainer(p, c)
			c.RestartCount++
		}
	}
	l := ownLabels(p)
	for _, k := range a.RemoveLabels {
		delete(l, k)
	}
	maps.Copy(l, a.Labels)
	p.AnnotationKeys = slices.DeleteFunc(p.AnnotationKeys, func(k string) bool { return slices.Contains(a.RemoveAnnotations, k) })
	for _, k := range sortedKeys(a.Annotations) {
		if !slices.Contains(p.AnnotationKeys, k) {
			p.AnnotationKeys = append(p.AnnotationKeys, k)
		}
	}
	slices.Sort(p.AnnotationKeys)
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	for _, k := range a.RemoveAnnotations {
		delete(p.Annotations, k)
	}
	p.Annotations[StateAnnotation] = a.State
	p.State = projections.ParseState(p.Annotations)
	p.HasAnnotations = true
	kubeletReady(f, d.c.Now)
}

// replace puts in p's place the pod its workload makes from the target
// revision: a new UID, the target's revision label, template labels and
// containers, running and ready. Like any new pod it has no gate condition
// yet, so it is not Ready until the planner sets the condition True: it
// counts unavailable for that round, as a real replacement does.
func (d *dryRun) replace(p *projections.Pod, t *target) {
	d.ids++
	p.UID = journal.MakeUID(fmt.Sprintf("%s-dry-run-%d", p.UID, d.ids))
	p.Created, p.Deleting = d.c.Now, 0
	delete(p.Annotations, StateAnnotation)
	f := p.Pod
	l := ownLabels(p)
	if t != nil && t.to != nil {
		maps.Copy(l, t.to.Labels)
		l[RevisionLabel] = t.label
		if t.generation != "" {
			l[TemplateGenerationLabel] = t.generation
		}
		for _, k := range sortedKeys(t.to.Annotations) {
			if !slices.Contains(p.AnnotationKeys, k) {
				p.AnnotationKeys = append(p.AnnotationKeys, k)
			}
		}
		slices.Sort(p.AnnotationKeys)
		f.Containers = fromTemplate(f.Containers, t.to.Containers)
		f.SetInitContainers(fromTemplate(f.InitContainers(), t.to.InitContainers))
	}
	p.HasAnnotations = len(p.AnnotationKeys) > 0 || len(p.Annotations) > 0
	for _, list := range [][]projections.Container{f.Containers, f.InitContainers()} {
		for i := range list {
			c := &list[i]
			d.runContainer(p, c)
			c.RestartCount = 0
			c.ActualRequests, c.ActualLimits = maps.Clone(c.Requests), maps.Clone(c.Limits)
		}
	}
	f.Phase = "Running"
	f.QOSClass = qosAfter(f, nil)
	f.Conditions = nil
	kubeletReady(f, d.c.Now)
}

// fromTemplate is a new pod's containers: the template's, and those
// admission added to the old pod (which no template names) as they were.
func fromTemplate(old []projections.Container, tmpl []journal.TemplateContainer) []projections.Container {
	var out []projections.Container
	for _, tc := range tmpl {
		out = append(out, projections.NewContainer(journal.Container{Name: tc.Name, Image: tc.Image, Requests: maps.Clone(tc.Requests), Limits: maps.Clone(tc.Limits), RestartAlways: tc.RestartAlways}))
	}
	for _, c := range old {
		if !hasContainer(tmpl, c.Name) {
			out = append(out, c)
		}
	}
	return out
}

// runContainer starts a container on its spec image: a new container ID,
// the image resolved (the image itself, so a digest pin matches), running
// and ready.
func (d *dryRun) runContainer(p *projections.Pod, c *projections.Container) {
	d.ids++
	c.ContainerID = projections.ParseContainerID(fmt.Sprintf("dry-run://%s/%s/%d", p.UID, c.Name, d.ids))
	c.ImageID, c.StatusImage = c.Image, c.Image
	c.State, c.Started, c.Ready = "running", true, true
}

// pod returns the copy's pod to write, copying it first if it is still
// shared with the original state; nil when the pod is gone or replaced (the
// UID precondition every pod write carries).
func (d *dryRun) pod(key, uid string) *projections.Pod {
	p := d.c.Pods[key]
	if p == nil || p.Pod == nil || !p.UID.IsText(uid) {
		return nil
	}
	if !d.own[key] {
		cp := *p
		cp.Own() // its shapes and facts are shared with other pods
		cp.SetLabels(maps.Clone(p.Labels()))
		cp.Annotations = maps.Clone(p.Annotations)
		cp.AnnotationKeys = slices.Clone(p.AnnotationKeys)
		d.c.Pods[key] = &cp
		d.own[key] = true
		p = &cp
	}
	return p
}

// ownLabels returns the labels of a pod the dry run has copied (pod), to
// change: a map of the copy's own, with every label in it.
func ownLabels(p *projections.Pod) map[string]string {
	l := p.Labels()
	if l == nil {
		l = map[string]string{}
		p.SetLabels(l)
	}
	return l
}

// rollout returns the copy's rollout to write, copied on first write.
func (d *dryRun) rollout(key string) *projections.Rollout {
	r := d.c.Rollouts[key]
	if r == nil {
		return nil
	}
	if !d.own["rollout:"+key] {
		cp := *r
		d.c.Rollouts[key] = &cp
		d.own["rollout:"+key] = true
		r = &cp
	}
	r.ObservedAt = d.c.Now
	return r
}

// target resolves a rollout's target in the copy, once.
func (d *dryRun) target(key string) *target {
	if t, ok := d.targets[key]; ok {
		return t
	}
	var tp *target
	if r := d.c.Rollouts[key]; r != nil {
		if t, problem, _ := resolveTarget(d.c, r); problem == "" {
			tp = &t
		}
	}
	d.targets[key] = tp
	return tp
}

// setPodCondition sets a pod condition; its transition time moves only
// when its status does.
func setPodCondition(f *projections.Facts, typ, status, reason, message string, now int64) {
	for i := range f.Conditions {
		c := &f.Conditions[i]
		if c.Type() == typ {
			at := c.LastTransition
			if c.Status() != status {
				at = now
			}
			// A new condition, not the old one's text changed: that text
			// may be shared with pods the dry run does not own.
			*c = projections.NewCondition(typ, status, reason, message, at)
			return
		}
	}
	f.Conditions = append(f.Conditions, projections.NewCondition(typ, status, reason, message, now))
}

// kubeletReady sets Ready as the kubelet computes it: every container
// ready and every readiness gate's condition True.
func kubeletReady(f *projections.Facts, now int64) {
	ready := len(f.Containers) > 0
	for _, c := range f.Containers {
		ready = ready && c.Ready
	}
	for _, g := range f.ReadinessGates {
		found := false
		for _, c := range f.Conditions {
			if c.Type() == g {
				found = c.Status() == "True"
			}
		}
		ready = ready && found
	}
	status := "False"
	if ready {
		status = "True"
	}
	setPodCondition(f, "Ready", status, "", "", now)
}

func condition(list []metav1.Condition, typ string) *metav1.Condition {
	for i := range list {
		if list[i].Type == typ {
			return &list[i]
		}
	}
	return nil
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
