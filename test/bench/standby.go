package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go/jetstream"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
)

// standbyCmd measures a new standby's start on a stream of a fleet's
// history (writeHistory, checkpoints every --checkpoint-every records),
// published by the outbox to an embedded NATS server: the controller's
// newest checkpoint is shipped beside the stream (its size there, the
// server compressing it, and the time), then a journal is filled from
// the stream as a new standby fills it, from record 1 (the only way
// before, and the baseline) and from the checkpoint beside the stream
// once the stream's limits have removed the records before it.
func standbyCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("standby")
	pods := fs.Int("pods", 10_000, "pods in the fleet")
	records := fs.Int("records", 500_000, "records of history in the stream up to the newest checkpoint; half a checkpoint interval more follow it")
	every := fs.Uint64("checkpoint-every", 50_000, "records between checkpoints (rollbook run's default)")
	keep := fs.Bool("keep", false, "keep the work directory")
	from := fs.String("journal", "", "a journal directory (a copy: it is published as it is) instead of a synthetic fleet's")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	dir, cleanup, err := env.workDir("standby", *keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	leaderDir := filepath.Join(dir, "leader")
	if *from != "" {
		leaderDir = *from
		fmt.Printf("\nstandby: journal %s\n", *from)
	} else {
		fmt.Printf("\nstandby: %d pods, %d records in the stream, a checkpoint every %d\n", *pods, *records, *every)
	}
	printMachine(env)
	// At 600,000 records a day, ending now.
	start, step := time.Now().Add(-time.Duration(*records)*24*time.Hour/600_000), 24*time.Hour/600_000
	clock := func(i int) time.Time { return start.Add(time.Duration(i) * step) }
	// The newest checkpoint half an interval before the end, as on
	// average in a controller's journal.
	if *from == "" {
		env.logf("writing the leader's journal")
		if _, err := writeHistory(ctx, leaderDir, *pods, *records+int(*every/2), 0, clock, *every, journal.Retention{}); err != nil {
			return nil, err
		}
	}
	leader, err := journal.Open(leaderDir, journal.Options{Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer leader.Close()
	last, head := leader.Last()

	srv, err := journal.StartEmbeddedNATS(filepath.Join(dir, "nats"))
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	cfg := journal.NATSConfig{Embedded: srv}
	nc, err := journal.ConnectNATS(cfg)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	// A cursor of its own: a controller's journal says its records are
	// in a stream already (its own).
	ob, err := journal.NewOutbox(leader, nc, journal.OutboxOptions{Logger: quiet, CursorName: "bench/standby"})
	if err != nil {
		return nil, err
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	go ob.Run(octx)
	env.logf("publishing %d records", last)
	t0 := time.Now()
	if err := ob.WaitPublished(ctx, last); err != nil {
		return nil, err
	}
	publish := time.Since(t0)
	t0 = time.Now()
	shipped, err := ob.ShipCheckpoint(ctx, 0, time.Hour)
	if err != nil {
		return nil, err
	}
	ship := time.Since(t0)
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	obs, err := js.ObjectStore(ctx, journal.CheckpointBucket(journal.DefaultStreamName))
	if err != nil {
		return nil, err
	}
	status, err := obs.Status(ctx)
	if err != nil {
		return nil, err
	}
	// The server compresses each of the bucket's blocks with S2 once it
	// is full, in the background: what the checkpoint takes there, once
	// compressed, is its S2 encoding's size (the disk right after the
	// copy still holds the last block as it came).
	c, _, err := leader.LatestCheckpoint(shipped)
	if err != nil {
		return nil, err
	}
	compressed := len(s2.Encode(nil, c.Data))
	infos, err := leader.Checkpoints()
	if err != nil {
		return nil, err
	}
	ckptBytes := infos[len(infos)-1].Bytes
	fmt.Printf("  published %d records in %s; shipped the checkpoint at record %d (%.1f MiB) in %s: %.1f MiB put, %.1f MiB once the server has compressed it (S2, %.1fx smaller)\n",
		last, publish.Round(time.Millisecond), shipped, mib(float64(ckptBytes)), ship.Round(time.Millisecond), mib(float64(status.Size())), mib(float64(compressed)), float64(ckptBytes)/float64(compressed))

	st, err := js.Stream(ctx, journal.DefaultStreamName)
	if err != nil {
		return nil, err
	}
	// fill is what a new standby does before it follows, as `journal
	// restore` does: seed (when the stream no longer holds record 1), then
	// import what is left.
	fill := func(name string) (time.Duration, uint64, error) {
		env.logf("%s", name)
		j, err := journal.Open(filepath.Join(dir, name), journal.Options{ID: leader.ID(), Logger: quiet})
		if err != nil {
			return 0, 0, err
		}
		defer j.Close()
		t0 := time.Now()
		_, imported, err := ctl.RestoreFromStream(ctx, j, cfg, journal.DefaultStreamName)
		took := time.Since(t0)
		if got, h := j.Last(); err == nil && (got != last || h != head) {
			err = fmt.Errorf("%s: the journal ends at %d, the leader's at %d", name, got, last)
		}
		return took, imported, err
	}
	whole, wholeN, err := fill("from-record-1")
	if err != nil {
		return nil, err
	}
	// The stream's limits remove the records before the checkpoint.
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(shipped+1)); err != nil {
		return nil, err
	}
	seeded, seededN, err := fill("from-the-checkpoint")
	if err != nil {
		return nil, err
	}
	fmt.Printf("  a new standby's journal, caught up with the stream: from record 1 %s (%d records imported); from the checkpoint beside it %s (the checkpoint, and %d records) — %.1fx faster\n",
		whole.Round(time.Millisecond), wholeN, seeded.Round(time.Millisecond), seededN, whole.Seconds()/seeded.Seconds())
	return map[string]any{"pods": *pods, "records": last, "checkpoint_record": shipped, "checkpoint_mib": mib(float64(ckptBytes)),
		"bucket_mib": mib(float64(status.Size())), "bucket_s2_mib": mib(float64(compressed)), "s2_ratio": round(float64(ckptBytes)/float64(compressed), 1), "ship_s": round(ship.Seconds(), 3), "publish_s": round(publish.Seconds(), 2),
		"standby_from_record_1_s": round(whole.Seconds(), 2), "standby_from_checkpoint_s": round(seeded.Seconds(), 3)}, nil
}
