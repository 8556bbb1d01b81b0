package tracing

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// rolloutResource is the Observed.Resource of InPlaceRollouts; their record
// keys start with it (ingest.Key), which lets the builder skip decoding the
// far more numerous pod records.
const (
	rolloutResource  = "inplacerollouts.rollbook.dev"
	rolloutKeyPrefix = rolloutResource + "/"
)

// ReadFunc reads journal records from a sequence on, in order:
// (*journal.Journal).Read, or Follow.
type ReadFunc func(ctx context.Context, from uint64, fn func(journal.Record) error) error

// Options configure a Builder.
type Options struct {
	// Rollout keeps only the spans of this rollout, "namespace/name"
	// (every object that had the name, each its own trace); "" keeps all.
	Rollout string
	// Live is for a builder that follows the journal for as long as the
	// controller runs: it hands each finished span out once (Finished) and
	// keeps only what is still open, so Spans returns open spans only.
	// Without Live, Spans returns everything built so far.
	Live bool
}

func (o Options) validate() error {
	if o.Rollout == "" {
		return nil
	}
	ns, name, ok := strings.Cut(o.Rollout, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("tracing: rollout %q is not namespace/name", o.Rollout)
	}
	return nil
}

// Build folds the whole journal (read from sequence 1; pass
// (*journal.Journal).Read) into the spans of one rollout ("namespace/name")
// or, with rollout "", of every rollout. Spans still open at the end of the
// journal end at its last record. Building twice from the same records
// gives identical spans, and identical to those a live Builder finished.
func Build(ctx context.Context, read ReadFunc, rollout string) ([]sdktrace.ReadOnlySpan, error) {
	b, err := NewBuilder(Options{Rollout: rollout})
	if err != nil {
		return nil, err
	}
	var addErr error
	err = read(ctx, 1, func(r journal.Record) error {
		addErr = b.Add(r)
		return addErr
	})
	switch {
	case addErr != nil:
		return nil, addErr
	case err != nil:
		return nil, fmt.Errorf("tracing: read journal: %w", err)
	}
	return b.Spans(), nil
}

// Builder folds journal records, one at a time and in order, into spans:
//
//	rollout <ns/name>               first Observed record → status phase Succeeded, RolledBack or Failed
//	  step <i>                      status.currentStep becoming i → becoming something else
//	    pod <ns/name>               the pod's first action for the rollout → its last
//	      gate|patch|ungate|...     ActionIntended → ActionSucceeded / ActionFailed
//	  status|event                  rollout-level actions, under the rollout
//
// A step begins when the planner intends a status with a new currentStep
// (at the first record of that plan: the plan's pod actions come before
// its status action in the journal) or when the observed status shows a
// currentStep change the builder did not see intended. A pod belongs to
// the step in effect for the plan of its first action (ActionFact.PlanSeq).
//
// A run is the stretch of a rollout from its start, or from the first pod
// action after it finished, to its terminal phase (or its deletion). A
// rollout whose spec is changed after it succeeded gets a second run in the
// same trace: new step and pod spans (pod spans named with the run, see
// PodSpanID) under the root span, which keeps the end of the first run.
//
// When spans finish: an action at its outcome record; a step when the next
// one begins or the run ends; pods when the run ends (only then is "its
// last action" known); the rollout at its terminal phase or its deletion.
// A span, once finished, never changes, which is why Finished can hand it
// out for export at once.
//
// NB: a Builder must see the journal from its first record (as Build does)
// or at least from each rollout's first Observed record: actions of a
// rollout it has not seen are skipped, as are actions with no rollout (the
// initial ungate of a new pod). A controller that restarts refolds from 1
// and should not export again what Finished returns for records its
// predecessor had already exported.
//
// A Builder is not safe for concurrent use.
type Builder struct {
	opts  Options
	byKey map[string]*rolloutTrace // rollout "ns/name" → the latest object of that name
	order []*rolloutTrace          // every rollout tracked, by first record
	done  []sdktrace.ReadOnlySpan  // finished spans (kept unless Live)
	fresh []sdktrace.ReadOnlySpan  // finished since the last Finished call
	seq   uint64                   // last record folded
	now   time.Time                // its time: where open spans end
}

// NewBuilder returns an empty Builder.
func NewBuilder(opts Options) (*Builder, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Builder{opts: opts, byKey: map[string]*rolloutTrace{}}, nil
}

// rolloutTrace is the state of one rollout object (one UID): one trace.
type rolloutTrace struct {
	key, uid string
	tid      trace.TraceID
	root     trace.SpanID
	start    time.Time
	firstSeq uint64

	// Last observed spec and status, for attributes and the root's status.
	phase     string
	failedMsg string
	revision  string
	percents  []int32
	// Root span end, once finished.
	ended  bool
	end    time.Time
	endSeq uint64
	events []sdktrace.Event
	// deleted: the object is gone; it takes no new runs.
	deleted bool
	// prior is the earlier object of the same name, while it still has
	// actions awaiting an outcome.
	prior *rolloutTrace

	run     int
	runOpen bool
	// step is the latest known currentStep, intended or observed;
	// observedStep the latest observed one.
	step         int32
	observedStep int32
	observedSet  bool
	segs         []*segment // the current run's steps, in record order
	stepCount    map[int32]int
	// planSeq/planAt: the latest plan of this rollout's intents and the
	// time of its first intent, where a step it starts begins.
	planSeq uint64
	planAt  time.Time

	pods     map[string]*podSpan // pod UID → span, current run
	podOrder []*podSpan
	open     map[trace.SpanID]*actionSpan // intents awaiting an outcome
	last     map[string]attempt           // action key → its latest try, until one succeeds
}

// segment is one step span.
type segment struct {
	index  int32
	n      int    // occurrence of this index in the rollout, from 1
	effSeq uint64 // plans derived at or after this sequence are in it
	seq    uint64 // the record that began it
	start  time.Time
}

// podSpan is a pod's span in one run.
type podSpan struct {
	key, uid   string
	run        int
	firstPlan  uint64
	firstSeq   uint64
	lastSeq    uint64
	start, end time.Time
	actions    int
	failures   int
	open       int // actions awaiting an outcome
	revision   string
	outcome    string // of its latest finished action
	errClass   string
	errText    string
	images     []planner.ContainerChange
}

// actionSpan is an intent awaiting its outcome.
type actionSpan struct {
	id, parent trace.SpanID
	fact       journal.ActionFact // the intent, without its encoded action
	act        *planner.Action    // decoded, nil if it would not decode
	actErr     string
	seq        uint64
	start      time.Time
	pod        *podSpan // nil for rollout-level actions
	try        int      // tries of this key since it last succeeded, this one included
	prev       attempt  // the try before, if try > 1
}

// attempt remembers the latest try of an action key that has not
// succeeded (yet), for retry links.
type attempt struct {
	id    trace.SpanID
	class string // failure class of its outcome, "" while it has none
	tries int    // tries of the key since it last succeeded, this one included
}

// outcome is an action's outcome record.
type outcome struct {
	seq  uint64
	at   time.Time
	kind journal.Kind
	fact journal.ActionFact
}

// Outcome values of the rollbook.outcome attribute.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	OutcomeAbandoned = "abandoned"
	OutcomePending   = "pending" // no outcome in the journal (yet)
)

// Add folds the next record. Records must come in sequence order; an
// unknown kind or a body that does not decode is an error, as everywhere
// the journal is read.
func (b *Builder) Add(r journal.Record) error {
	if b.seq != 0 && r.Seq <= b.seq {
		return fmt.Errorf("tracing: record %d after %d: records must come in order", r.Seq, b.seq)
	}
	b.seq = r.Seq
	if r.Time.After(b.now) {
		b.now = r.Time
	}
	switch r.Kind {
	case journal.KindObserved:
		if !strings.HasPrefix(r.Key, rolloutKeyPrefix) {
			return nil
		}
		var o journal.Observed
		if err := r.Decode(&o); err != nil {
			return fmt.Errorf("tracing: record %d: %w", r.Seq, err)
		}
		if o.Resource == rolloutResource {
			b.observe(r, o)
		}
	case journal.KindVanished:
		if !strings.HasPrefix(r.Key, rolloutKeyPrefix) {
			return nil
		}
		var v journal.Vanished
		if err := r.Decode(&v); err != nil {
			return fmt.Errorf("tracing: record %d: %w", r.Seq, err)
		}
		if rt := b.byKey[v.Namespace+"/"+v.Name]; v.Resource == rolloutResource && rt != nil && rt.uid == v.UID && !rt.deleted {
			b.remove(rt, r, "rollout deleted (found gone on a relist)")
		}
	case journal.KindActionIntended, journal.KindActionSucceeded, journal.KindActionFailed:
		var f journal.ActionFact
		if err := r.Decode(&f); err != nil {
			return fmt.Errorf("tracing: record %d: %w", r.Seq, err)
		}
		b.action(r, f)
	case journal.KindTick, journal.KindCursor:
	default:
		return fmt.Errorf("tracing: record %d: %w: %v", r.Seq, journal.ErrUnknownKind, r.Kind)
	}
	return nil
}

// Finished returns the spans finished since the last call, in the order
// they finished. Each span is returned once.
func (b *Builder) Finished() []sdktrace.ReadOnlySpan {
	out := b.fresh
	b.fresh = nil
	return out
}

// Spans returns every span built so far (only the open ones when Live):
// open spans end at the last record folded. Sorted by start time, then
// parents before children, then span ID.
func (b *Builder) Spans() []sdktrace.ReadOnlySpan {
	out := append([]sdktrace.ReadOnlySpan(nil), b.done...)
	for _, rt := range b.order {
		out = append(out, b.openSpans(rt)...)
	}
	sortSpans(out)
	return out
}

func (b *Builder) emit(s sdktrace.ReadOnlySpan) {
	b.fresh = append(b.fresh, s)
	if !b.opts.Live {
		b.done = append(b.done, s)
	}
}

func (b *Builder) observe(r journal.Record, o journal.Observed) {
	key := o.Namespace + "/" + o.Name
	if b.opts.Rollout != "" && key != b.opts.Rollout {
		return
	}
	rt := b.byKey[key]
	var prior *rolloutTrace
	if rt != nil && rt.uid != o.UID {
		// A new object of the same name: the old one is gone even if no
		// delete was journaled for it. Outcomes of its actions may still
		// come, found through prior.
		if !rt.deleted {
			b.remove(rt, r, "rollout replaced by a new object of the same name")
		}
		if len(rt.open) > 0 {
			prior = rt
		}
		rt = nil
	}
	if o.Deleted {
		if rt != nil && !rt.deleted {
			b.remove(rt, r, "rollout deleted")
		}
		return
	}
	var spec projections.RolloutSpec
	var st projections.RolloutStatus
	// Unreadable JSON reads as empty, as the planner treats it: tracing
	// must not fail where the controller carries on.
	_ = json.Unmarshal(o.Spec, &spec)
	if len(o.Status) > 0 {
		_ = json.Unmarshal(o.Status, &st)
	}
	if rt == nil {
		rt = b.newRollout(key, o.UID, r, st.CurrentStep)
		rt.prior = prior
	}
	rt.percents = rt.percents[:0]
	for _, s := range spec.Strategy.Steps {
		rt.percents = append(rt.percents, s.Percent)
	}
	if st.TargetRevision != "" {
		rt.revision = st.TargetRevision
	}
	if rt.observedSet && st.CurrentStep != rt.observedStep {
		b.setStep(rt, st.CurrentStep, r.Seq, r.Seq, r.Time)
	}
	rt.observedStep, rt.observedSet = st.CurrentStep, true

	was := rt.phase
	rt.phase = st.Phase
	if projections.Terminal(st.Phase) && !projections.Terminal(was) {
		rt.failedMsg = ""
		for _, c := range st.Conditions {
			if c.Type == "Failed" && c.Status == "True" {
				rt.failedMsg = c.Message
			}
		}
		b.endRun(rt, r.Seq, r.Time)
	}
}

func (b *Builder) newRollout(key, uid string, r journal.Record, step int32) *rolloutTrace {
	rt := &rolloutTrace{
		key: key, uid: uid,
		tid: RolloutTraceID(uid), root: RolloutSpanID(uid),
		start: r.Time, firstSeq: r.Seq,
		run: 1, runOpen: true, step: step,
		stepCount: map[int32]int{},
		pods:      map[string]*podSpan{},
		open:      map[trace.SpanID]*actionSpan{},
		last:      map[string]attempt{},
	}
	rt.segs = []*segment{rt.newSegment(step, r.Seq, r.Seq, r.Time)}
	b.byKey[key] = rt
	b.order = append(b.order, rt)
	return rt
}

func (rt *rolloutTrace) newSegment(index int32, effSeq, seq uint64, at time.Time) *segment {
	rt.stepCount[index]++
	return &segment{index: index, n: rt.stepCount[index], effSeq: effSeq, seq: seq, start: at}
}

// setStep makes index the current step for plans from effSeq on.
func (b *Builder) setStep(rt *rolloutTrace, index int32, effSeq, seq uint64, at time.Time) {
	rt.step = index
	if !rt.runOpen {
		return // the next run starts from it
	}
	cur := rt.segs[len(rt.segs)-1]
	if cur.index == index {
		return
	}
	if cur.effSeq == effSeq {
		// The same plan moved the step again: the step it began with was
		// never in effect for any plan, so it becomes this one rather than
		// leaving an empty span behind.
		rt.stepCount[cur.index]--
		rt.stepCount[index]++
		cur.index, cur.n = index, rt.stepCount[index]
		return
	}
	at = later(at, cur.start)
	b.emit(rt.stepSpan(cur, at, false))
	rt.segs = append(rt.segs, rt.newSegment(index, effSeq, seq, at))
}

// stepFor is the step of a plan derived at planSeq: the last step, in
// record order, in effect at or before it.
func (rt *rolloutTrace) stepFor(planSeq uint64) *segment {
	for i := len(rt.segs) - 1; i >= 0; i-- {
		if rt.segs[i].effSeq <= planSeq {
			return rt.segs[i]
		}
	}
	return rt.segs[0]
}

// startRun opens a new run of a finished rollout at a pod action's intent.
func (b *Builder) startRun(rt *rolloutTrace, r journal.Record, planSeq uint64) {
	rt.run++
	rt.runOpen = true
	rt.pods = map[string]*podSpan{}
	rt.podOrder = nil
	rt.segs = []*segment{rt.newSegment(rt.step, planSeq, r.Seq, rt.planAt)}
}

// endRun finishes the run's step and pod spans and, the first time, the
// rollout's root span.
func (b *Builder) endRun(rt *rolloutTrace, seq uint64, at time.Time) {
	if rt.runOpen {
		cur := rt.segs[len(rt.segs)-1]
		b.emit(rt.stepSpan(cur, later(at, cur.start), false))
		for _, ps := range rt.podOrder {
			b.emit(rt.podSpan(ps, ps.end, false))
		}
		rt.runOpen = false
		rt.pods, rt.podOrder, rt.segs = nil, nil, nil
	}
	if !rt.ended {
		rt.ended, rt.end, rt.endSeq = true, later(at, rt.start), seq
		b.emit(rt.rootSpan(rt.end, false))
	}
}

// remove ends a rollout whose object is gone.
func (b *Builder) remove(rt *rolloutTrace, r journal.Record, why string) {
	rt.deleted = true
	if !rt.ended {
		rt.events = append(rt.events, sdktrace.Event{Name: why, Time: r.Time})
	}
	b.endRun(rt, r.Seq, r.Time)
	b.forget(rt)
}

// forget drops, in Live mode, a deleted rollout with nothing in flight.
func (b *Builder) forget(rt *rolloutTrace) {
	if !b.opts.Live || !rt.deleted || len(rt.open) > 0 {
		return
	}
	if b.byKey[rt.key] == rt {
		delete(b.byKey, rt.key)
	}
	for _, x := range b.byKey {
		if x.prior == rt {
			x.prior = nil
		}
	}
	for i, x := range b.order {
		if x == rt {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
}

func (b *Builder) action(r journal.Record, f journal.ActionFact) {
	if f.Rollout == "" {
		return // serves no rollout: the initial ungate of a new pod, a release
	}
	if b.opts.Rollout != "" && f.Rollout != b.opts.Rollout {
		return
	}
	rt := b.byKey[f.Rollout]
	if rt == nil {
		return // the rollout's records were not read
	}
	if r.Kind == journal.KindActionIntended {
		b.intend(rt, r, f)
		return
	}
	for owner := rt; owner != nil; owner = owner.prior {
		if a := owner.open[ActionSpanID(owner.uid, f.Key, f.PlanSeq, f.Attempt)]; a != nil {
			b.finishAction(owner, a, outcome{seq: r.Seq, at: r.Time, kind: r.Kind, fact: f})
			return
		}
	}
}

func (b *Builder) intend(rt *rolloutTrace, r journal.Record, f journal.ActionFact) {
	if f.PlanSeq != rt.planSeq || rt.planAt.IsZero() {
		rt.planSeq, rt.planAt = f.PlanSeq, r.Time
	}
	a := &actionSpan{id: ActionSpanID(rt.uid, f.Key, f.PlanSeq, f.Attempt), fact: f, seq: r.Seq, start: r.Time}
	if _, dup := rt.open[a.id]; dup {
		// The same intent journaled twice without an outcome between: the
		// span is already open, and its outcome will close it.
		return
	}
	if len(f.Action) > 0 {
		var act planner.Action
		if err := journal.DecodeBody(f.Action, &act); err != nil {
			// The fact itself decoded; the tracer shows the action by key
			// rather than refuse the whole journal over a detail.
			a.actErr = err.Error()
		} else {
			a.act = &act
		}
	}
	a.fact.Action = nil
	// A key intended again after it failed (or was abandoned) is a retry.
	// After a success it is not: a status or an event key names the
	// object, not the content, and comes back with every write.
	a.try = 1
	if prev, ok := rt.last[f.Key]; ok {
		a.try, a.prev = prev.tries+1, prev
	}
	rt.last[f.Key] = attempt{id: a.id, tries: a.try}

	a.parent = rt.root
	if f.Pod != "" {
		if !rt.runOpen && !rt.deleted {
			b.startRun(rt, r, f.PlanSeq)
		}
		if rt.runOpen {
			ident := f.UID
			if ident == "" {
				ident = f.Pod
			}
			ps := rt.pods[ident]
			if ps == nil {
				ps = &podSpan{key: f.Pod, uid: ident, run: rt.run, firstPlan: f.PlanSeq, firstSeq: r.Seq, start: r.Time}
				rt.pods[ident] = ps
				rt.podOrder = append(rt.podOrder, ps)
			}
			ps.actions++
			ps.open++
			ps.lastSeq, ps.end = r.Seq, later(r.Time, ps.end)
			if f.Revision != "" {
				ps.revision = f.Revision
			}
			if a.act != nil && a.act.Kind == planner.Patch && len(a.act.Images) > 0 {
				ps.images = a.act.Images
			}
			a.pod, a.parent = ps, PodSpanID(rt.uid, ps.uid, ps.run)
		}
	}
	if f.Kind == string(planner.Status) && a.act != nil && a.act.Status != nil {
		b.setStep(rt, a.act.Status.CurrentStep, f.PlanSeq, r.Seq, rt.planAt)
	}
	rt.open[a.id] = a
}

func (b *Builder) finishAction(rt *rolloutTrace, a *actionSpan, o outcome) {
	delete(rt.open, a.id)
	class := ""
	if o.kind == journal.KindActionFailed {
		class = o.fact.Class
		if class == "" {
			class = journal.ClassOther
		}
	}
	if l, ok := rt.last[a.fact.Key]; ok && l.id == a.id {
		if class == "" {
			delete(rt.last, a.fact.Key) // succeeded: what comes next is no retry
		} else {
			l.class = class
			rt.last[a.fact.Key] = l
		}
	}
	if ps := a.pod; ps != nil {
		ps.open--
		if o.seq > ps.lastSeq {
			ps.lastSeq = o.seq
		}
		ps.end = later(o.at, ps.end)
		ps.outcome, ps.errClass, ps.errText = outcomeOf(o), class, o.fact.Error
		if class != "" {
			ps.failures++
		}
	}
	b.emit(rt.actionSpan(a, &o, o.at))
	b.forget(rt)
}

func outcomeOf(o outcome) string {
	switch {
	case o.kind == journal.KindActionSucceeded:
		return OutcomeSucceeded
	case o.fact.Class == journal.ClassAbandoned:
		return OutcomeAbandoned
	default:
		return OutcomeFailed
	}
}

// openSpans are rt's spans not finished yet, as they stand now.
func (b *Builder) openSpans(rt *rolloutTrace) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	if !rt.ended {
		out = append(out, rt.rootSpan(later(b.now, rt.start), true))
	}
	if rt.runOpen {
		cur := rt.segs[len(rt.segs)-1]
		out = append(out, rt.stepSpan(cur, later(b.now, cur.start), true))
		for _, ps := range rt.podOrder {
			end := ps.end
			if ps.open > 0 {
				end = b.now
			}
			out = append(out, rt.podSpan(ps, end, true))
		}
	}
	open := make([]*actionSpan, 0, len(rt.open))
	for _, a := range rt.open {
		open = append(open, a)
	}
	sort.Slice(open, func(i, j int) bool { return open[i].seq < open[j].seq })
	for _, a := range open {
		out = append(out, rt.actionSpan(a, nil, later(b.now, a.start)))
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}
