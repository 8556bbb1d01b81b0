package main

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/tracing"
)

// traceCursor is the journal cursor below which finished spans have been
// exported: a restarted controller rebuilds its span state from where the
// earliest running rollout began (traceFrom), exporting only what it had not.
const traceCursor = "tracing/exported"

// maxPendingSpans bounds the spans kept while the collector is down.
const maxPendingSpans = 50_000

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
	var (
		mu      sync.Mutex // pending, last, and the builder
		pending []sdktrace.ReadOnlySpan
		last    uint64
	)
	flush := func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
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
	// NB: flush on a clock, not on the next record: the span that ends a
	// rollout is often the last record for a long while.
	flushed := make(chan error, 1)
	fctx, stop := context.WithCancel(ctx)
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-fctx.Done():
				flushed <- nil
				return
			case <-tick.C:
				if err := flush(fctx); err != nil {
					flushed <- err
					return
				}
			}
		}
	}()
	seen := max(c.traceFrom, 1) - 1 // the last record added to the builder
	add := func(r journal.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if err := b.Add(r); err != nil {
			return err
		}
		seen = r.Seq
		fin := b.Finished()
		if r.Seq <= done {
			return nil // exported by an earlier process
		}
		last = r.Seq
		pending = append(pending, fin...)
		if over := len(pending) - maxPendingSpans; over > 0 {
			// The collector has been down a long while: memory stays
			// bounded, and the oldest spans are left to `rollbook trace
			// --otlp`, which rebuilds the very same spans from the journal.
			c.log.Warn("tracing: collector unreachable, dropping the oldest pending spans", "dropped", over)
			pending = append(pending[:0], pending[over:]...)
		}
		return nil
	}
	// From the first record of the earliest rollout still running (or
	// the checkpoint): spans of rollouts that ended before it were
	// exported by an earlier process, or are left to `rollbook trace`.
	err = c.j.Follow(ctx, c.traceFrom, add)
	stop()
	if ferr := <-flushed; ferr != nil && err == nil {
		err = ferr
	}
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		// Stopping: the follower may not have reached the last records
		// (a rollout's end comes right before a stop, often). Add what
		// the journal holds now, for a few seconds at most, so that the
		// last flush exports them and not the next process.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := c.j.Read(dctx, seen+1, add); err != nil {
			c.log.Info("tracing: spans of the last records left to the next start", "err", err)
		}
		return flush(context.WithoutCancel(ctx))
	}
	return err
}
