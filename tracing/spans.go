package tracing

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// ScopeName is the instrumentation scope of every span built here.
const ScopeName = "rollbook.dev/rollbook/tracing"

// Attribute keys. The rollbook.* ones are ours; k8s.* follow the
// OpenTelemetry semantic conventions.
const (
	AttrRollout       = "rollbook.rollout" // "namespace/name"
	AttrRolloutUID    = "rollbook.rollout.uid"
	AttrPhase         = "rollbook.phase" // the rollout's phase when its span ended (or now)
	AttrSteps         = "rollbook.steps" // how many steps the spec has
	AttrStep          = "rollbook.step"  // step index
	AttrStepPercent   = "rollbook.step.percent"
	AttrRun           = "rollbook.run"    // see Builder
	AttrOpen          = "rollbook.open"   // true on a span not finished yet (Builder.Spans)
	AttrPod           = "rollbook.pod"    // "namespace/name"
	AttrAction        = "rollbook.action" // planner.Action.String(), the canonical form
	AttrActionKind    = "rollbook.action.kind"
	AttrActionKey     = "rollbook.action.key" // the idempotence key, also the records' key
	AttrRevision      = "rollbook.revision"
	AttrSeq           = "rollbook.journal.seq"         // the intent (or first) record
	AttrOutcomeSeq    = "rollbook.journal.outcome_seq" // the outcome (or last) record
	AttrPlanSeq       = "rollbook.plan_seq"
	AttrAttempt       = "rollbook.attempt" // ActionFact.Attempt as journaled
	AttrTry           = "rollbook.try"     // tries of this key since it last succeeded, this one included
	AttrOutcome       = "rollbook.outcome" // Outcome* values
	AttrResultVersion = "rollbook.result_version"
	AttrErrorClass    = "rollbook.error.class"
	AttrContainers    = "rollbook.containers"  // names of the containers a patch changes;
	AttrImagesFrom    = "rollbook.images.from" // their images before,
	AttrImagesTo      = "rollbook.images.to"   // and after, in the same order
	AttrActions       = "rollbook.actions"     // pod: actions intended
	AttrFailures      = "rollbook.failures"    // pod: actions failed
	// A measure span (one analysis measurement): the check, the step it
	// gates, what was asked, the value and the verdict.
	AttrCheck     = "rollbook.analysis.check"
	AttrQuery     = "rollbook.analysis.query"
	AttrCondition = "rollbook.analysis.condition"
	AttrValue     = "rollbook.analysis.value"
	AttrVerdict   = "rollbook.analysis.verdict"
	AttrNamespace = "k8s.namespace.name"
	AttrPodName   = "k8s.pod.name"
	AttrPodUID    = "k8s.pod.uid"
)

// Span events.
const (
	EventRetry     = "retry"
	EventConflict  = "conflict"
	EventAbandoned = "abandoned by a controller restart"
)

var scope = instrumentation.Scope{Name: ScopeName}

func (rt *rolloutTrace) spanContext(id trace.SpanID) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: rt.tid, SpanID: id, TraceFlags: trace.FlagsSampled})
}

func (rt *rolloutTrace) stub(name string, id, parent trace.SpanID, kind trace.SpanKind, start, end time.Time) tracetest.SpanStub {
	s := tracetest.SpanStub{
		Name:                 name,
		SpanContext:          rt.spanContext(id),
		SpanKind:             kind,
		StartTime:            start,
		EndTime:              later(end, start),
		InstrumentationScope: scope,
	}
	if parent.IsValid() {
		s.Parent = rt.spanContext(parent)
	}
	return s
}

func (rt *rolloutTrace) base() []attribute.KeyValue {
	ns, _, _ := strings.Cut(rt.key, "/")
	return []attribute.KeyValue{
		attribute.String(AttrRollout, rt.key),
		attribute.String(AttrRolloutUID, rt.uid),
		attribute.String(AttrNamespace, ns),
	}
}

func (rt *rolloutTrace) rootSpan(end time.Time, open bool) sdktrace.ReadOnlySpan {
	s := rt.stub("rollout "+rt.key, rt.root, trace.SpanID{}, trace.SpanKindInternal, rt.start, end)
	s.Attributes = append(rt.base(),
		attribute.String(AttrPhase, rt.phase),
		attribute.Int(AttrSteps, len(rt.percents)),
		attribute.Int64(AttrSeq, int64(rt.firstSeq)),
	)
	if rt.revision != "" {
		s.Attributes = append(s.Attributes, attribute.String(AttrRevision, rt.revision))
	}
	if open {
		s.Attributes = append(s.Attributes, attribute.Bool(AttrOpen, true))
	} else {
		s.Attributes = append(s.Attributes, attribute.Int64(AttrOutcomeSeq, int64(rt.endSeq)))
		switch rt.phase {
		case projections.PhaseSucceeded:
			s.Status = sdktrace.Status{Code: codes.Ok}
		case projections.PhaseFailed:
			s.Status = sdktrace.Status{Code: codes.Error, Description: joinNonEmpty("rollout failed", rt.failedMsg)}
		case projections.PhaseRolledBack:
			s.Status = sdktrace.Status{Code: codes.Error, Description: joinNonEmpty("rolled back", rt.failedMsg)}
		}
	}
	s.Events = append([]sdktrace.Event(nil), rt.events...)
	return s.Snapshot()
}

func (rt *rolloutTrace) stepSpan(seg *segment, end time.Time, open bool) sdktrace.ReadOnlySpan {
	s := rt.stub("step "+strconv.Itoa(int(seg.index)), StepSpanID(rt.uid, seg.index, seg.n), rt.root, trace.SpanKindInternal, seg.start, end)
	s.Attributes = append(rt.base(),
		attribute.Int(AttrStep, int(seg.index)),
		attribute.Int(AttrRun, rt.run),
		attribute.Int64(AttrSeq, int64(seg.seq)),
	)
	if seg.index >= 0 && int(seg.index) < len(rt.percents) {
		s.Attributes = append(s.Attributes, attribute.Int(AttrStepPercent, int(rt.percents[seg.index])))
	}
	if open {
		s.Attributes = append(s.Attributes, attribute.Bool(AttrOpen, true))
	}
	return s.Snapshot()
}

func (rt *rolloutTrace) podSpan(ps *podSpan, end time.Time, open bool) sdktrace.ReadOnlySpan {
	seg := rt.stepFor(ps.firstPlan)
	s := rt.stub("pod "+ps.key, PodSpanID(rt.uid, ps.uid, ps.run), StepSpanID(rt.uid, seg.index, seg.n), trace.SpanKindInternal, ps.start, end)
	_, name, _ := strings.Cut(ps.key, "/")
	s.Attributes = append(rt.base(),
		attribute.String(AttrPod, ps.key),
		attribute.String(AttrPodName, name),
		attribute.String(AttrPodUID, ps.uid),
		attribute.String(AttrRevision, ps.revision),
		attribute.Int(AttrStep, int(seg.index)),
		attribute.Int(AttrRun, ps.run),
		attribute.Int(AttrActions, ps.actions),
		attribute.Int(AttrFailures, ps.failures),
		attribute.Int64(AttrSeq, int64(ps.firstSeq)),
		attribute.Int64(AttrOutcomeSeq, int64(ps.lastSeq)),
	)
	s.Attributes = append(s.Attributes, imageAttrs(ps.images)...)
	out := ps.outcome
	if ps.open > 0 || out == "" {
		out = OutcomePending
	}
	s.Attributes = append(s.Attributes, attribute.String(AttrOutcome, out))
	if open {
		s.Attributes = append(s.Attributes, attribute.Bool(AttrOpen, true))
	}
	if out == OutcomeFailed || out == OutcomeAbandoned {
		// The pod's latest action failed and nothing after it succeeded.
		s.Status = sdktrace.Status{Code: codes.Error, Description: ps.errClass + ": " + ps.errText}
	}
	return s.Snapshot()
}

// actionSpan is a's span, finished by o, or open (o nil) until end.
func (rt *rolloutTrace) actionSpan(a *actionSpan, o *outcome, end time.Time) sdktrace.ReadOnlySpan {
	f := a.fact
	s := rt.stub(f.Kind, a.id, a.parent, trace.SpanKindClient, a.start, end)
	desc := f.Key
	if a.act != nil {
		desc = describe(*a.act)
	}
	s.Attributes = append(rt.base(),
		attribute.String(AttrAction, desc),
		attribute.String(AttrActionKind, f.Kind),
		attribute.String(AttrActionKey, f.Key),
		attribute.String(AttrRevision, f.Revision),
		attribute.Int64(AttrPlanSeq, int64(f.PlanSeq)),
		attribute.Int(AttrAttempt, max(f.Attempt, 1)),
		attribute.Int(AttrTry, a.try),
		attribute.Int64(AttrSeq, int64(a.seq)),
	)
	if f.Pod != "" {
		_, name, _ := strings.Cut(f.Pod, "/")
		s.Attributes = append(s.Attributes,
			attribute.String(AttrPod, f.Pod),
			attribute.String(AttrPodName, name),
			attribute.String(AttrPodUID, f.UID))
	}
	if a.act != nil {
		s.Attributes = append(s.Attributes, imageAttrs(a.act.Images)...)
	}
	if a.actErr != "" {
		s.Attributes = append(s.Attributes, attribute.String("rollbook.action.decode_error", a.actErr))
	}
	if a.try > 1 || f.Attempt > 1 {
		ev := sdktrace.Event{Name: EventRetry, Time: a.start, Attributes: []attribute.KeyValue{
			attribute.Int(AttrTry, a.try), attribute.Int(AttrAttempt, max(f.Attempt, 1)),
		}}
		if a.prev.class != "" {
			ev.Attributes = append(ev.Attributes, attribute.String("rollbook.previous.error.class", a.prev.class))
		}
		s.Events = append(s.Events, ev)
		if a.prev.id.IsValid() {
			// The attempt before, in the same trace: a retry is a new span,
			// not a continuation of the old one.
			s.Links = append(s.Links, sdktrace.Link{
				SpanContext: rt.spanContext(a.prev.id),
				Attributes:  []attribute.KeyValue{attribute.String("rollbook.link", "previous attempt")},
			})
		}
	}
	if o == nil {
		s.Attributes = append(s.Attributes, attribute.String(AttrOutcome, OutcomePending), attribute.Bool(AttrOpen, true))
		return s.Snapshot()
	}
	out := outcomeOf(*o)
	s.Attributes = append(s.Attributes,
		attribute.Int64(AttrOutcomeSeq, int64(o.seq)),
		attribute.String(AttrOutcome, out))
	if m := o.fact.Measurement; m != nil {
		s.Attributes = append(s.Attributes,
			attribute.String(AttrCheck, m.Check), attribute.Int(AttrStep, int(m.Step)),
			attribute.String(AttrQuery, m.Query), attribute.String(AttrCondition, m.Condition),
			attribute.String(AttrValue, m.Value), attribute.String(AttrVerdict, m.Verdict))
		if m.Verdict != journal.VerdictPass {
			// Not an error of the action, which did its job: the
			// measurement is the evidence a failed analysis rests on.
			s.Events = append(s.Events, sdktrace.Event{Name: "rollbook.analysis." + strings.ToLower(m.Verdict), Time: o.at, Attributes: []attribute.KeyValue{
				attribute.String("rollbook.analysis.error", m.Error),
			}})
		}
	}
	if out == OutcomeSucceeded {
		if o.fact.ResultVersion != "" {
			s.Attributes = append(s.Attributes, attribute.String(AttrResultVersion, o.fact.ResultVersion))
		}
		return s.Snapshot()
	}
	class := o.fact.Class
	if class == "" {
		class = journal.ClassOther
	}
	s.Attributes = append(s.Attributes, attribute.String(AttrErrorClass, class))
	s.Status = sdktrace.Status{Code: codes.Error, Description: class + ": " + o.fact.Error}
	switch class {
	case journal.ClassConflict:
		s.Events = append(s.Events, sdktrace.Event{Name: EventConflict, Time: o.at, Attributes: []attribute.KeyValue{
			attribute.String("exception.message", o.fact.Error),
		}})
	case journal.ClassAbandoned:
		s.Events = append(s.Events, sdktrace.Event{Name: EventAbandoned, Time: o.at, Attributes: []attribute.KeyValue{
			attribute.String("exception.message", o.fact.Error),
		}})
	}
	return s.Snapshot()
}

// describe is a.String(), which dereferences Status on a status action:
// a malformed one without it is shown by its key instead.
func describe(a planner.Action) string {
	if a.Kind == planner.Status && a.Status == nil {
		return a.Key()
	}
	return a.String()
}

func imageAttrs(images []planner.ContainerChange) []attribute.KeyValue {
	if len(images) == 0 {
		return nil
	}
	names := make([]string, len(images))
	from := make([]string, len(images))
	to := make([]string, len(images))
	for i, c := range images {
		names[i], from[i], to[i] = c.Name, c.From, c.To
	}
	return []attribute.KeyValue{
		attribute.StringSlice(AttrContainers, names),
		attribute.StringSlice(AttrImagesFrom, from),
		attribute.StringSlice(AttrImagesTo, to),
	}
}

func joinNonEmpty(a, b string) string {
	if b == "" {
		return a
	}
	return a + ": " + b
}

// sortSpans orders spans by start time, then parents before children
// (longer first among spans starting together), then trace and span ID:
// a total order, so equal span sets always come out equal.
func sortSpans(spans []sdktrace.ReadOnlySpan) {
	sort.SliceStable(spans, func(i, j int) bool {
		a, b := spans[i], spans[j]
		if !a.StartTime().Equal(b.StartTime()) {
			return a.StartTime().Before(b.StartTime())
		}
		if da, db := depth(a), depth(b); da != db {
			return da < db
		}
		if !a.EndTime().Equal(b.EndTime()) {
			return a.EndTime().After(b.EndTime())
		}
		at, bt := a.SpanContext().TraceID(), b.SpanContext().TraceID()
		if c := bytes.Compare(at[:], bt[:]); c != 0 {
			return c < 0
		}
		as, bs := a.SpanContext().SpanID(), b.SpanContext().SpanID()
		return bytes.Compare(as[:], bs[:]) < 0
	})
}

// depth ranks a span built here by its level in the tree.
func depth(s sdktrace.ReadOnlySpan) int {
	switch n := s.Name(); {
	case strings.HasPrefix(n, "rollout "):
		return 0
	case strings.HasPrefix(n, "step "):
		return 1
	case strings.HasPrefix(n, "pod "):
		return 2
	}
	return 3
}
