package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/tracing"
)

func spansFrom(ctx context.Context, src recordSource, rollout string) ([]sdktrace.ReadOnlySpan, error) {
	return tracing.Build(ctx, func(ctx context.Context, from uint64, fn func(journal.Record) error) error {
		return src.read(ctx, fn)
	}, rollout)
}

// traceCmd rebuilds a past rollout's spans from the journal, with their
// recorded times: printed as a waterfall, or exported to OTLP as the
// standard OTEL_* variables say. It works even if tracing was off when
// the rollout ran.
func traceCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	src := sourceFlags(fs)
	export := fs.Bool("otlp", false, "export the spans to OTLP (OTEL_EXPORTER_OTLP_ENDPOINT etc.) instead of printing them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rollout := fs.Arg(0)
	spans, err := spansFrom(ctx, *src, rollout)
	if err != nil {
		return err
	}
	if len(spans) == 0 {
		return fmt.Errorf("no spans for rollout %q in %s", rollout, src.describe())
	}
	if !*export {
		return tracing.Waterfall(os.Stdout, spans)
	}
	exp, err := tracing.NewExporter(ctx)
	if err != nil {
		return err
	}
	if exp == nil {
		return errors.New("tracing is off: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)")
	}
	defer exp.Shutdown(context.WithoutCancel(ctx))
	if err := tracing.Export(ctx, exp, spans); err != nil {
		return err
	}
	fmt.Printf("exported %d spans, trace %s\n", len(spans), spans[0].SpanContext().TraceID())
	return nil
}

// historyCmd prints a rollout's per-pod timeline: every action with its
// time, outcome and the journal records behind it.
func historyCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	src := sourceFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	rollout := fs.Arg(0)
	if rollout == "" {
		return errors.New("usage: rollbook history --dir DIR namespace/name")
	}
	spans, err := spansFrom(ctx, *src, rollout)
	if err != nil {
		return err
	}
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
		return fmt.Errorf("no rollout %q in %s", rollout, src.describe())
	}
	fmt.Printf("rollout %s  phase %s  trace %s  %s → %s\n", rollout, attr(root, tracing.AttrPhase), root.SpanContext().TraceID(),
		root.StartTime().UTC().Format(time.RFC3339), root.EndTime().UTC().Format(time.RFC3339))
	sort.Slice(pods, func(i, j int) bool { return pods[i].StartTime().Before(pods[j].StartTime()) })
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	for _, p := range pods {
		fmt.Fprintf(w, "\npod %s\t(uid %s)\n", attr(p, tracing.AttrPod), attr(p, tracing.AttrPodUID))
		acts := byParent[p.SpanContext().SpanID().String()]
		sort.Slice(acts, func(i, j int) bool { return acts[i].StartTime().Before(acts[j].StartTime()) })
		for _, a := range acts {
			detail := attr(a, tracing.AttrAction)
			if e := attr(a, tracing.AttrErrorClass); e != "" {
				detail += "  [" + e + ": " + a.Status().Description + "]"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\trecords %s→%s\t%s\t%s\n", a.StartTime().UTC().Format("15:04:05.000"), phaseWord(a),
				attr(a, tracing.AttrOutcome), attr(a, tracing.AttrSeq), attr(a, tracing.AttrOutcomeSeq), a.EndTime().Sub(a.StartTime()).Round(time.Millisecond), detail)
		}
	}
	return w.Flush()
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
