package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/tracing"
)

func spansFrom(ctx context.Context, src recordSource, rollout string) ([]sdktrace.ReadOnlySpan, error) {
	return ctl.Spans(ctx, src.source(), rollout)
}

// traceCmd rebuilds a past rollout's spans from the journal, with their
// recorded times: printed as a waterfall (or -o json|yaml), or exported
// to OTLP as the standard OTEL_* variables say. It works even if tracing
// was off when the rollout ran.
func traceCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	src := sourceFlags(fs)
	export := fs.Bool("otlp", false, "export the spans to OTLP (OTEL_EXPORTER_OTLP_ENDPOINT etc.) instead of printing them")
	output := fs.String("o", "", "output format: json or yaml (default: a waterfall)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: rollbook trace --dir DIR namespace/name [--otlp | -o json|yaml]")
	}
	if err := ctl.CheckFormat(*output); err != nil {
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
		if *output != "" {
			return ctl.Print(os.Stdout, *output, ctl.TraceSpans(spans))
		}
		return tracing.Waterfall(os.Stdout, spans)
	}
	return exportSpans(ctx, spans)
}

// exportSpans sends spans to the OTLP endpoint the OTEL_* variables name.
func exportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
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
	output := fs.String("o", "", "output format: json or yaml (default: text)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: rollbook history --dir DIR namespace/name [-o json|yaml]")
	}
	if err := ctl.CheckFormat(*output); err != nil {
		return err
	}
	rollout := fs.Arg(0)
	spans, err := spansFrom(ctx, *src, rollout)
	if err != nil {
		return err
	}
	h, ok := ctl.History(spans, rollout)
	if !ok {
		return fmt.Errorf("no rollout %q in %s", rollout, src.describe())
	}
	return ctl.PrintHistory(os.Stdout, *output, h)
}
