package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"rollbook.dev/rollbook/ctl"
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
	rollout := fs.String("rollout", "", "compare only this rollout's actions (namespace/name): those of its current object, read (from a journal directory) from the newest checkpoint before its first record")
	whatIf := fs.Bool("what-if", false, "do not stop at the first divergence: report every plan today's planner would change")
	full := fs.Bool("full", false, "plan everything at every recorded plan (planner.Plan, the definition) instead of incrementally as the controller does; slower on large journals")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	start := time.Now()
	d, rp, records, err := replay(ctx, *src, *rollout, replayMode{whatIf: *whatIf, full: *full})
	if err != nil {
		return err
	}
	took := time.Since(start)
	from := ""
	if rp.From > 0 {
		from = fmt.Sprintf(" after the checkpoint at record %d", rp.From)
	}
	fmt.Printf("replayed %d records from %s%s in %s (%.0f records/s): %s\n", records, src.describe(), from, took.Round(time.Millisecond), float64(records)/took.Seconds(), rp.Summary())
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

// replay reads the source once, folding and comparing as it goes
// (planner.OnePass); a journal whose intents come too long after their
// plan's record (planner.ErrLateIntent) is replayed again in two passes:
// collect the recorded intents, then fold and compare.
// replayMode: whatIf goes on past divergences; full plans with
// planner.Plan, crossCheck with both (Replayer.Full, CrossCheck).
type replayMode struct{ whatIf, full, crossCheck bool }

func replay(ctx context.Context, src recordSource, rollout string, mode replayMode) (*planner.Divergence, *planner.Replayer, uint64, error) {
	var o *planner.OnePass
	base := func(b *projections.Books) error {
		o = planner.NewOnePass(b.State, rollout)
		o.KeepGoing, o.Full, o.CrossCheck = mode.whatIf, mode.full, mode.crossCheck
		return nil
	}
	n, stopped, err := feed(ctx, src, rollout, base, func(d projections.Decoded) (bool, error) { return o.AddDecoded(d) })
	if err == nil && !stopped {
		_, err = o.Finish()
	}
	if errors.Is(err, planner.ErrLateIntent) {
		return replayTwoPasses(ctx, src, rollout, mode)
	}
	if err != nil {
		return nil, nil, n, err
	}
	return firstDivergence(o.Replayer), o.Replayer, n, nil
}

// replayTwoPasses is replay for any journal: collect the recorded intents,
// then fold and compare.
func replayTwoPasses(ctx context.Context, src recordSource, rollout string, mode replayMode) (*planner.Divergence, *planner.Replayer, uint64, error) {
	add, intents := planner.CollectIntents()
	if err := src.read(ctx, add); err != nil {
		return nil, nil, 0, err
	}
	var rp *planner.Replayer
	base := func(b *projections.Books) error {
		rp = planner.NewReplayerFrom(b.State, intents(), rollout)
		rp.KeepGoing, rp.Full, rp.CrossCheck = mode.whatIf, mode.full, mode.crossCheck
		return nil
	}
	n, _, err := feed(ctx, src, rollout, base, func(d projections.Decoded) (bool, error) { return rp.AddDecoded(d) })
	if err != nil {
		return nil, nil, n, err
	}
	return firstDivergence(rp), rp, n, nil
}

// feed reads src into add (made by base) until add says stop, and counts
// the records read, decoding them ahead (ctl.DecodeAhead). With a rollout
// it reads a journal directory from the newest checkpoint before the
// rollout's first record (ctl.Source.ReadForRollout): none of its plans
// comes before.
func feed(ctx context.Context, src recordSource, rollout string, base func(*projections.Books) error, add func(projections.Decoded) (bool, error)) (n uint64, stopped bool, err error) {
	return ctl.DecodeAhead(ctx, func(ctx context.Context, fn func(journal.Record) error) error {
		return src.source().ReadForRollout(ctx, rollout, base, fn)
	}, add)
}

func firstDivergence(rp *planner.Replayer) *planner.Divergence {
	if len(rp.Divergences) > 0 {
		return &rp.Divergences[0]
	}
	return nil
}
