package main

import (
	"context"
	"errors"
	"strconv"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/tracing"
)

// traceCursor is the journal cursor below which finished spans have been
// exported: a restarted controller rebuilds its span state from record 1
// but exports only what it had not.
const traceCursor = "tracing/exported"

// traceLoop follows the journal with a live span builder and exports
// finished spans (an action at its outcome, a pod and the rollout at the
// end) about once a second. Spans are derived from records with
// deterministic IDs, so these are the very spans `rollbook trace` rebuilds
// later, and a rollout that outlives a restart stays one trace.
func (c *controller) traceLoop(ctx context.Context, exp sdktrace.SpanExporter) error {
	defer exp.Shutdown(context.WithoutCancel(ctx))
	b, err := tracing.NewBuilder(tracing.Options{Live: true})
	if err != nil {
		return err
	}
	var done uint64
	if v, ok, err := c.j.Cursor(traceCursor); err != nil {
		return err
	} else if ok {
		done, _ = strconv.ParseUint(v, 10, 64)
	}
	var pending []sdktrace.ReadOnlySpan
	var last uint64
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := tracing.Export(ctx, exp, pending); err != nil {
			c.log.Warn("tracing: export failed; will retry", "err", err, "spans", len(pending))
			return nil // spans stay pending: tracing must never stop the controller
		}
		pending = pending[:0]
		return c.j.SetCursor(journal.Cursor{Name: traceCursor, Value: strconv.FormatUint(last, 10)})
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	err = c.j.Follow(ctx, 1, func(r journal.Record) error {
		if err := b.Add(r); err != nil {
			return err
		}
		fin := b.Finished()
		if r.Seq <= done {
			return nil // exported by an earlier process
		}
		last = r.Seq
		pending = append(pending, fin...)
		select {
		case <-tick.C:
			return flush()
		default:
			return nil
		}
	})
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		ctx = context.WithoutCancel(ctx)
		return flush()
	}
	return err
}
