package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// errDiverged makes replay exit non-zero.
var errDiverged = errors.New("replay diverged")

func sourceFlags(fs *flag.FlagSet) *recordSource {
	s := &recordSource{}
	fs.StringVar(&s.dir, "dir", "", "journal directory")
	fs.StringVar(&s.export, "export", "", "a `rollbook journal export` file (.jsonl or .jsonl.gz)")
	fs.StringVar(&s.nats.URL, "nats-url", "", "read the journal from this NATS server's JetStream stream")
	fs.StringVar(&s.nats.CredsFile, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&s.stream, "stream", "ROLLBOOK", "JetStream stream name")
	return s
}

func replayCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	src := sourceFlags(fs)
	rollout := fs.String("rollout", "", "compare only this rollout's actions (namespace/name)")
	whatIf := fs.Bool("what-if", false, "do not stop at the first divergence: report every plan today's planner would change")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	start := time.Now()
	d, rp, records, err := replay(ctx, *src, *rollout, *whatIf)
	if err != nil {
		return err
	}
	took := time.Since(start)
	fmt.Printf("replayed %d records from %s in %s (%.0f records/s): %s\n", records, src.describe(), took.Round(time.Millisecond), float64(records)/took.Seconds(), rp.Summary())
	if d == nil {
		fmt.Println("no divergence: today's planner derives exactly the recorded actions")
		return nil
	}
	if *whatIf {
		for i := range rp.Divergences {
			fmt.Printf("would differ: %s\n", rp.Divergences[i].String())
		}
	} else {
		fmt.Fprintf(os.Stderr, "first divergence: %s\n", d.String())
	}
	return errDiverged
}

// replay runs the two passes: collect the recorded intents, then fold and
// compare.
func replay(ctx context.Context, src recordSource, rollout string, whatIf bool) (*planner.Divergence, *planner.Replayer, uint64, error) {
	add, intents := planner.CollectIntents()
	if err := src.read(ctx, add); err != nil {
		return nil, nil, 0, err
	}
	var rp *planner.Replayer
	base := func(b *projections.Books) error {
		rp = planner.NewReplayerFrom(b.State, intents(), rollout)
		rp.KeepGoing = whatIf
		return nil
	}
	var n uint64
	errStop := errors.New("stop")
	err := src.readFrom(ctx, base, func(r journal.Record) error {
		n++
		ok, err := rp.Add(r)
		if err != nil {
			return err
		}
		if !ok {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, nil, n, err
	}
	if len(rp.Divergences) > 0 {
		return &rp.Divergences[0], rp, n, nil
	}
	return nil, rp, n, nil
}
