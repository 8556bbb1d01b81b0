// Package tracing turns the journal into OpenTelemetry traces: one trace per
// rollout, with spans rollout → step → pod → action.
//
// Spans are not recorded as things happen: they are derived from journal
// records, with IDs that depend only on what the records say (see
// RolloutSpanID and the rest, and ids.go for the naming scheme). So the
// spans the controller exports live and the spans `rollbook trace` rebuilds
// from a journal months later are the same spans, and a rollout that
// outlives a controller restart stays one trace, its trace ID being
// planner.TraceID of the rollout's UID. Tracing only reads: it changes no
// behaviour, and a process without a collector loses nothing, since the
// journal can be exported again at any time.
//
// # After the fact
//
//	spans, err := tracing.Build(ctx, j.Read, "shop/web-2-0") // "" for every rollout
//	err = tracing.Waterfall(os.Stdout, spans)
//	exp, err := tracing.NewExporter(ctx) // from OTEL_* variables; nil when off
//	err = tracing.Export(ctx, exp, spans)
//
// # Live, in the controller's run loop
//
// The builder follows the journal like any projection and hands out each
// span once, when it finishes (an action at its outcome, a step when the
// next begins, pods and the rollout at the rollout's end):
//
//	b, _ := tracing.NewBuilder(tracing.Options{Live: true})
//	caughtUp, _ := j.Last() // spans finished before: the previous process's to export
//	err := j.Follow(ctx, 1, func(r journal.Record) error {
//		if err := b.Add(r); err != nil {
//			return err
//		}
//		done := b.Finished()
//		if r.Seq > caughtUp {
//			spansCh <- done // exported by another goroutine: Follow's fn must not block
//		}
//		return nil
//	})
//
// # Context propagation
//
// The outbox puts a W3C traceparent on every record it publishes to NATS
// (journal.OutboxOptions.TraceParent = tracing.RecordTraceParent()), and
// the rollout's traceparent may be written on the rollout itself under
// RolloutAnnotation (RolloutTraceParent), so consumers of the stream and
// readers of the object can join the rollout's trace.
package tracing
