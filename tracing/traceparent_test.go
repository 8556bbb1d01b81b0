package tracing

import (
	"context"
	"strconv"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
)

// TestTraceParentW3C: what TraceParent writes, OpenTelemetry's own W3C
// propagator reads back, sampled; ParseTraceParent agrees and refuses junk.
func TestTraceParentW3C(t *testing.T) {
	tid, sid := RolloutTraceID(webUID), RolloutSpanID(webUID)
	tp := TraceParent(tid, sid)
	if want := "00-" + planner.TraceID(webUID) + "-" + sid.String() + "-01"; tp != want || RolloutTraceParent(webUID) != want {
		t.Fatalf("TraceParent %q, RolloutTraceParent %q, want %q", tp, RolloutTraceParent(webUID), want)
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || sc.TraceID() != tid || sc.SpanID() != sid || !sc.IsSampled() {
		t.Fatalf("the W3C propagator read %q as %v", tp, sc)
	}
	gt, gs, err := ParseTraceParent(tp)
	if err != nil || gt != tid || gs != sid {
		t.Fatalf("ParseTraceParent(%q) = %v %v %v", tp, gt, gs, err)
	}
	for _, bad := range []string{"", "00-abc-def-01", "01-" + tid.String() + "-" + sid.String() + "-01", "00-" + tid.String() + "-0000000000000000-01"} {
		if _, _, err := ParseTraceParent(bad); err == nil {
			t.Errorf("ParseTraceParent(%q): no error", bad)
		}
	}
}

// TestRecordTraceParent: fed the journal in order, as the outbox does, the
// function gives each action record (intent and outcome alike) the
// traceparent of its span in the built trace, each rollout record its
// rollout span's, and pod records and actions of no rollout nothing. A
// TraceParents that resumes mid-journal knows a rollout only once it has
// observed its records.
func TestRecordTraceParent(t *testing.T) {
	w := newWorld(t)
	w.scenario()
	ctx := context.Background()
	spans, err := Build(ctx, w.j.Read, "")
	if err != nil {
		t.Fatal(err)
	}
	// Each action record's span, by the record's sequence.
	spanOfSeq := map[uint64]string{}
	for _, s := range sdkSpans(spans) {
		if s.Kind != "SPAN_KIND_CLIENT" {
			continue
		}
		for _, k := range []string{AttrSeq, AttrOutcomeSeq} {
			if v, ok := s.Attrs[k]; ok {
				n, _ := strconv.ParseUint(v, 10, 64)
				spanOfSeq[n] = TraceParent(RolloutTraceID(s.Attrs[AttrRolloutUID]), mustSpanID(t, s.SpanID))
			}
		}
	}
	of := RecordTraceParent()
	var actions, rollouts int
	err = w.j.Read(ctx, 1, func(r journal.Record) error {
		got := of(r)
		switch {
		case r.Kind == journal.KindObserved && r.Key == rolloutKeyPrefix+webKey:
			rollouts++
			if got != RolloutTraceParent(webUID) {
				t.Errorf("record %d (%s): %q, want the rollout's %q", r.Seq, r.Key, got, RolloutTraceParent(webUID))
			}
		case r.Kind == journal.KindActionIntended || r.Kind == journal.KindActionSucceeded || r.Kind == journal.KindActionFailed:
			want := spanOfSeq[r.Seq] // "" for the ungate of no rollout
			if want != "" {
				actions++
			}
			if got != want {
				t.Errorf("record %d %v %s: %q, want %q", r.Seq, r.Kind, r.Key, got, want)
			}
		case r.Kind == journal.KindObserved && r.Key == rolloutKeyPrefix+apiKey:
		default:
			if got != "" {
				t.Errorf("record %d %v %s: %q, want none", r.Seq, r.Kind, r.Key, got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if actions < 40 || rollouts < 4 {
		t.Fatalf("checked %d action records and %d rollout records: the scenario has more", actions, rollouts)
	}

	// Resuming at the second half of the journal: without Observe, the
	// web rollout's actions there are unknown; with it, they are right.
	last, _ := w.j.Last()
	half := last / 2
	cold, warm := NewTraceParents(), NewTraceParents()
	var coldHits, warmHits int
	err = w.j.Read(ctx, 1, func(r journal.Record) error {
		if r.Seq < half {
			warm.Observe(r)
			return nil
		}
		c, h := cold.Of(r), warm.Of(r)
		if want := spanOfSeq[r.Seq]; want != "" {
			if c == want {
				coldHits++
			}
			if h != want {
				t.Errorf("record %d: resumed with Observe: %q, want %q", r.Seq, h, want)
			}
			warmHits++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if warmHits == 0 || coldHits == warmHits {
		t.Errorf("resumed: %d of %d action records right without Observe; the test proves nothing", coldHits, warmHits)
	}
}

func mustSpanID(t *testing.T, s string) trace.SpanID {
	t.Helper()
	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
