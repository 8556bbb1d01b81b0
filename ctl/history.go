package ctl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/tracing"
)

// Spans rebuilds the spans of rollout's current object (namespace/name)
// from src, read from where that object's records begin
// (Source.ReadRolloutRecords): what it costs does not grow with the journal's
// history before the rollout.
func Spans(ctx context.Context, src Source, rollout string) ([]sdktrace.ReadOnlySpan, error) {
	return tracing.Build(ctx, rolloutReader(src, rollout, nil), rollout)
}

// rolloutReader reads src for rollout's spans (Source.ReadRolloutRecords), or
// every record when rollout is "". seen, when set, sees every record read.
func rolloutReader(src Source, rollout string, seen func(journal.Record)) tracing.ReadFunc {
	return func(ctx context.Context, _ uint64, add func(journal.Record) error) error {
		fn := add
		if seen != nil {
			fn = func(r journal.Record) error { seen(r); return add(r) }
		}
		if rollout == "" {
			return src.Read(ctx, fn)
		}
		return src.ReadRolloutRecords(ctx, rollout, fn)
	}
}

// HistoryAction is one action in a pod's timeline.
type HistoryAction struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Step is the action as the timeline reads it: gated, patched,
	// verified, ungated, resized, recreated.
	Step    string `json:"step"`
	Outcome string `json:"outcome"`
	// Records are the journal sequences of the intent and its outcome.
	Records string `json:"records"`
	Action  string `json:"action"`
	Error   string `json:"error,omitempty"`
}

// HistoryPod is one pod's timeline.
type HistoryPod struct {
	Pod     string          `json:"pod"`
	UID     string          `json:"uid"`
	Actions []HistoryAction `json:"actions"`
}

// HistoryOf is a rollout's per-pod timeline, as `history -o json` prints it.
type HistoryOf struct {
	Rollout string        `json:"rollout"`
	Phase   string        `json:"phase"`
	TraceID string        `json:"traceID"`
	Start   time.Time     `json:"start"`
	End     time.Time     `json:"end"`
	Pods    []*HistoryPod `json:"pods"`
}

// History builds rollout's per-pod timeline from its spans; ok is false
// when the spans hold no such rollout.
func History(spans []sdktrace.ReadOnlySpan, rollout string) (h HistoryOf, ok bool) {
	byParent := map[string][]sdktrace.ReadOnlySpan{}
	var pods []sdktrace.ReadOnlySpan
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		byParent[s.Parent().SpanID().String()] = append(byParent[s.Parent().SpanID().String()], s)
		if attr(s, tracing.AttrPodUID) != "" && attr(s, tracing.AttrActionKind) == "" {
			pods = append(pods, s)
		}
		if !s.Parent().IsValid() {
			root = s
		}
	}
	if root == nil {
		return h, false
	}
	h = HistoryOf{Rollout: rollout, Phase: attr(root, tracing.AttrPhase), TraceID: root.SpanContext().TraceID().String(),
		Start: root.StartTime().UTC(), End: root.EndTime().UTC(), Pods: []*HistoryPod{}}
	sort.Slice(pods, func(i, j int) bool { return pods[i].StartTime().Before(pods[j].StartTime()) })
	for _, p := range pods {
		hp := &HistoryPod{Pod: attr(p, tracing.AttrPod), UID: attr(p, tracing.AttrPodUID), Actions: []HistoryAction{}}
		acts := byParent[p.SpanContext().SpanID().String()]
		sort.Slice(acts, func(i, j int) bool { return acts[i].StartTime().Before(acts[j].StartTime()) })
		for _, a := range acts {
			ha := HistoryAction{Start: a.StartTime().UTC(), End: a.EndTime().UTC(), Step: phaseWord(a), Outcome: attr(a, tracing.AttrOutcome),
				Records: attr(a, tracing.AttrSeq) + "→" + attr(a, tracing.AttrOutcomeSeq), Action: attr(a, tracing.AttrAction)}
			if e := attr(a, tracing.AttrErrorClass); e != "" {
				ha.Error = e + ": " + a.Status().Description
			}
			hp.Actions = append(hp.Actions, ha)
		}
		h.Pods = append(h.Pods, hp)
	}
	return h, true
}

// PrintHistory writes a timeline as text, or as JSON or YAML (format).
func PrintHistory(w io.Writer, format string, h HistoryOf) error {
	if format != "" {
		return Print(w, format, h)
	}
	fmt.Fprintf(w, "rollout %s  phase %s  trace %s  %s → %s\n", h.Rollout, h.Phase, h.TraceID, h.Start.Format(time.RFC3339), h.End.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, p := range h.Pods {
		fmt.Fprintf(tw, "\npod %s\t(uid %s)\n", p.Pod, p.UID)
		for _, a := range p.Actions {
			detail := a.Action
			if a.Error != "" {
				detail += "  [" + a.Error + "]"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\trecords %s\t%s\t%s\n", a.Start.Format("15:04:05.000"), a.Step, a.Outcome, a.Records, a.End.Sub(a.Start).Round(time.Millisecond), detail)
		}
	}
	return tw.Flush()
}

// phaseWord names an action as the pod's timeline reads.
func phaseWord(a sdktrace.ReadOnlySpan) string {
	switch k := attr(a, tracing.AttrActionKind); k {
	case "gate":
		return "gated"
	case "patch":
		return "patched"
	case "ungate":
		if strings.Contains(attr(a, tracing.AttrAction), "verified") || a.Name() == "ungate" {
			return "verified, ungated"
		}
		return "ungated"
	case "resize":
		return "resized"
	case "recreate":
		return "recreated"
	default:
		return k
	}
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			if kv.Value.Type() == attribute.STRING {
				return kv.Value.AsString()
			}
			return kv.Value.Emit()
		}
	}
	return ""
}

// TraceSpan is one span as `trace -o json` prints it.
type TraceSpan struct {
	Name       string            `json:"name"`
	TraceID    string            `json:"traceID"`
	SpanID     string            `json:"spanID"`
	ParentID   string            `json:"parentID,omitempty"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Status     string            `json:"status,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// TraceSpans are spans as `trace -o json|yaml` prints them, in order of
// start.
func TraceSpans(spans []sdktrace.ReadOnlySpan) []TraceSpan {
	out := make([]TraceSpan, 0, len(spans))
	for _, s := range spans {
		ts := TraceSpan{Name: s.Name(), TraceID: s.SpanContext().TraceID().String(), SpanID: s.SpanContext().SpanID().String(),
			Start: s.StartTime().UTC(), End: s.EndTime().UTC(), Status: s.Status().Description, Attributes: map[string]string{}}
		if s.Parent().IsValid() {
			ts.ParentID = s.Parent().SpanID().String()
		}
		for _, kv := range s.Attributes() {
			ts.Attributes[string(kv.Key)] = kv.Value.Emit()
		}
		out = append(out, ts)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}
