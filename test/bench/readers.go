package main

import (
	"context"
	"fmt"
	"time"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/tracing"
)

// readersCmd measures what the journal's readers of the present read on a
// journal directory, each against the same reader from record 1 (what
// they all did before) on the same journal, in the same run:
//   - status and a dry run's plan (ctl.FoldState): the state from the
//     newest checkpoint (Source.ReadLatest) vs folded from record 1;
//   - history, trace and report of --rollout (ctl.Spans): from the record
//     that first showed the rollout's current object (Source.ReadRolloutRecords)
//     vs every record;
//   - what the journal API sends for each (ctl.WriteJournal's bytes).
func readersCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("readers")
	dir := fs.String("journal", "", "a journal directory, not in use (a copy, or a stopped controller's)")
	rollout := fs.String("rollout", "", "a rollout of the journal, namespace/name, for history (none: status only)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireJournal(*dir); err != nil {
		return nil, err
	}
	fmt.Printf("\nreaders: %s\n", *dir)
	printMachine(env)
	src := ctl.Source{Dir: *dir}
	out := map[string]any{"journal": *dir}
	row := func(name string, whole, now func() (uint64, error)) error {
		env.logf("%s", name)
		t0 := time.Now()
		n0, err := whole()
		if err != nil {
			return err
		}
		d0 := time.Since(t0)
		t1 := time.Now()
		n1, err := now()
		if err != nil {
			return err
		}
		d1 := time.Since(t1)
		fmt.Printf("  %-30s from record 1: %9d records %9s; now: %9d records %9s (%.0fx)\n", name, n0, d0.Round(time.Millisecond), n1, d1.Round(time.Millisecond), d0.Seconds()/d1.Seconds())
		out[name] = map[string]any{"whole_records": n0, "whole_s": round(d0.Seconds(), 3), "records": n1, "s": round(d1.Seconds(), 3), "ratio": round(d0.Seconds()/d1.Seconds(), 1)}
		return nil
	}
	fold := func(read func(base func(*projections.Books) error, fn func(journal.Record) error) error) (uint64, error) {
		var n uint64
		s := projections.New()
		err := read(func(b *projections.Books) error { s = b.State; return nil }, func(r journal.Record) error { n++; return s.Apply(r) })
		return n, err
	}
	err := row("status (the state now)",
		func() (uint64, error) {
			return fold(func(base func(*projections.Books) error, fn func(journal.Record) error) error {
				return src.ReadFrom(ctx, base, fn)
			})
		},
		func() (uint64, error) {
			return fold(func(base func(*projections.Books) error, fn func(journal.Record) error) error {
				return src.ReadLatest(ctx, base, fn)
			})
		})
	if err != nil {
		return nil, err
	}
	if *rollout != "" {
		var spans [2]int
		err := row("history of "+*rollout,
			func() (uint64, error) {
				var n uint64
				s, err := tracing.Build(ctx, func(ctx context.Context, _ uint64, fn func(journal.Record) error) error {
					return src.Read(ctx, func(r journal.Record) error { n++; return fn(r) })
				}, *rollout)
				spans[0] = len(s)
				return n, err
			},
			func() (uint64, error) {
				var n uint64
				s, err := tracing.Build(ctx, func(ctx context.Context, _ uint64, fn func(journal.Record) error) error {
					return src.ReadRolloutRecords(ctx, *rollout, func(r journal.Record) error { n++; return fn(r) })
				}, *rollout)
				spans[1] = len(s)
				return n, err
			})
		if err != nil {
			return nil, err
		}
		if spans[0] != spans[1] || spans[0] == 0 {
			return nil, fmt.Errorf("history of %s: %d spans from record 1, %d from its first record", *rollout, spans[0], spans[1])
		}
	}

	// The journal API: bytes for each request, from the open journal.
	j, err := ctl.OpenExisting(*dir)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	reqs := []struct {
		name string
		req  ctl.JournalRequest
	}{{"every record (from=1)", ctl.JournalRequest{From: 1}}, {"checkpoint=latest", ctl.JournalRequest{From: 1, Latest: true}}}
	if *rollout != "" {
		reqs = append(reqs, struct {
			name string
			req  ctl.JournalRequest
		}{"rollout=" + *rollout, ctl.JournalRequest{From: max(1, ctl.RolloutOrigin(ctx, j, *rollout))}})
	}
	api := map[string]any{}
	for _, r := range reqs {
		var c byteCounter
		t0 := time.Now()
		if err := ctl.WriteJournal(ctx, &c, j, r.req); err != nil {
			return nil, err
		}
		fmt.Printf("  journal API, %-24s %10.1f MiB in %s\n", r.name+":", mib(float64(c)), time.Since(t0).Round(time.Millisecond))
		api[r.name] = mib(float64(c))
	}
	out["journal_api_mib"] = api
	return out, nil
}

// byteCounter counts what is written to it.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) { *c += byteCounter(len(p)); return len(p), nil }
