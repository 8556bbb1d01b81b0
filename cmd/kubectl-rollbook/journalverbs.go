package main

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/tracing"
)

// The verbs that read the journal: the controller's, live, through its
// journal API (--controller), or a copy. They share their code with the
// rollbook binary's commands (package ctl).

// rolloutSpans parses a journal verb's command line and rebuilds the
// named rollout's spans from its journal source.
func rolloutSpans(ctx context.Context, e *env, args []string) (src ctl.Source, rollout string, spans []sdktrace.ReadOnlySpan, err error) {
	e.flags(true, true)
	if err = e.parse(args, 1); err != nil {
		return
	}
	if src, err = e.journal(); err != nil {
		return
	}
	rollout = e.key(e.fs.Arg(0))
	spans, err = ctl.Spans(ctx, src, rollout)
	return
}

func historyVerb(ctx context.Context, e *env, args []string) error {
	src, rollout, spans, err := rolloutSpans(ctx, e, args)
	if err != nil {
		return err
	}
	h, ok := ctl.History(spans, rollout)
	if !ok {
		return fmt.Errorf("no rollout %s in %s", rollout, src.Describe())
	}
	return ctl.PrintHistory(e.stdout, e.output, h)
}

func traceVerb(ctx context.Context, e *env, args []string) error {
	src, rollout, spans, err := rolloutSpans(ctx, e, args)
	if err != nil {
		return err
	}
	if len(spans) == 0 {
		return fmt.Errorf("no spans for rollout %s in %s", rollout, src.Describe())
	}
	if e.output != "" {
		return ctl.Print(e.stdout, e.output, ctl.TraceSpans(spans))
	}
	return tracing.Waterfall(e.stdout, spans)
}

func reportVerb(ctx context.Context, e *env, args []string) error {
	fs := e.flags(false, true)
	out := fs.String("out", "report.html", `the HTML file to write ("-": standard output)`)
	maxRows := fs.Int("max-rows", ctl.ReportDefaultMaxRows, "most pod rows in the timeline; beyond it steps collapse to aggregate rows")
	if err := e.parse(args, 1); err != nil {
		return err
	}
	if *maxRows < 0 {
		return fmt.Errorf("--max-rows is %d, must be >= 0", *maxRows)
	}
	src, err := e.journal()
	if err != nil {
		return err
	}
	page, title, err := ctl.Report(ctx, src, e.key(e.fs.Arg(0)), *maxRows)
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err := e.stdout.Write(page)
		return err
	}
	if err := ctl.WriteFile(*out, page); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote %s (%s, %d KiB)\n", *out, title, (len(page)+1023)/1024)
	return nil
}

// planVerb is a dry run of a manifest (-f) or of an existing rollout as if
// it were created now: over the cluster as the caller sees it (lists, with
// their own rights), or over a journal.
func planVerb(ctx context.Context, e *env, args []string) error {
	fs := e.flags(true, true)
	file := fs.StringP("filename", "f", "", "the InPlaceRollout manifest (YAML or JSON)")
	if err := e.parse(args, -1); err != nil {
		return err
	}
	if (*file == "") == (fs.NArg() == 0) {
		return fmt.Errorf("%w: give a manifest (-f FILE) or a rollout's NAME", errUsage)
	}
	if err := e.connect(); err != nil {
		return err
	}
	rollout, err := e.planTarget(ctx, *file, e.fs.Arg(0))
	if err != nil {
		return err
	}
	var f ctl.Folded
	var from string
	if e.controller != "" || e.src.Set() {
		src, err := e.source()
		if err != nil {
			return err
		}
		f, err = ctl.FoldSource(ctx, src)
		if err != nil {
			return err
		}
		from = src.Describe()
	} else {
		f, err = ctl.FoldCluster(ctx, dynamic.NewForConfigOrDie(e.cfg), rollout.GetNamespace())
		if err != nil {
			return err
		}
		from = "cluster " + e.cfg.Host
	}
	res, err := ctl.Preview(f, rollout)
	if err != nil {
		return err
	}
	return ctl.PrintPlan(e.stdout, e.output, from, f.State, res)
}

// planTarget is the rollout to plan: the manifest file's (in the
// namespace it names, or -n's), or the named rollout as the apiserver has
// it.
func (e *env) planTarget(ctx context.Context, file, name string) (*unstructured.Unstructured, error) {
	if file == "" {
		u, err := e.rollout(ctx, name)
		if err != nil {
			return nil, err
		}
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
			"metadata": map[string]any{"namespace": u.GetNamespace(), "name": u.GetName()},
			"spec":     u.Object["spec"],
		}}, nil
	}
	u, err := ctl.ReadRollout(file)
	if err != nil {
		return nil, err
	}
	switch ns := u.GetNamespace(); {
	case ns == "":
		u.SetNamespace(e.ns)
	case e.overrides.Context.Namespace != "" && ns != e.ns:
		return nil, fmt.Errorf("%s names namespace %s, and -n says %s", file, ns, e.ns)
	}
	return u, nil
}
