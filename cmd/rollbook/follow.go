package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
)

// follower keeps a standby's journal a copy of the leader's (DESIGN: one
// history across leaders): it reads the leader's JetStream stream and
// imports every record it lacks, as it is, so that when this replica
// leads it continues the same journal — same ID, same chain — and replay
// of the stream crosses the failover. It folds what it imports and writes
// checkpoints and applies retention as the leader does, so taking over
// starts in about a second.
//
// A standby whose journal is another history (another journal ID, or a
// tail the stream does not have: records a dead leader journaled but
// never published), or one that the stream has left behind (stopped for
// longer than the stream keeps records), moves it aside, whole, to
// <dir>.fork-<time>, and rebuilds from the stream: nothing is deleted,
// and the history that continues is the one the stream holds.
//
// A new standby of a stream whose limits removed its record 1 starts its
// journal at the newest checkpoint the leader shipped beside the stream
// (ctl.SeedFromStream), as a journal pruned to it.
type follower struct {
	dir    string
	nats   journal.NATSConfig
	stream string
	ckpt   checkpointOptions
	log    *slog.Logger
	// movedAside: a journal is moved aside at most once per process. A
	// second "fork" right after a rebuild from the stream is the stream's
	// own fault (a forged message): retrying, and saying so, is all a
	// standby can do; the leader is not affected.
	movedAside bool
}

// run follows until ctx ends, then catches up with what the stream held at
// that moment (for at most catchUp) and closes the journal: the caller
// opens it next, to lead. It returns only when the journal is closed.
func (f *follower) run(ctx context.Context, catchUp time.Duration) {
	for attempt := 0; ; attempt++ {
		err := f.session(ctx, catchUp)
		if err == nil || ctx.Err() != nil {
			if err != nil {
				f.log.Warn("follow: stopped before catching up with the stream", "err", err)
			}
			return
		}
		f.log.Warn("follow: retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 10*time.Second)):
		}
	}
}

// errFork says the local journal is not a prefix of the stream's.
var errFork = errors.New("the local journal is not a prefix of the stream")

// errBehind says the stream's limits removed the records after the local
// journal's last: a standby stopped for longer than the stream keeps.
// Its journal cannot continue; it is moved aside, as a fork is, and the
// new one starts at a checkpoint beside the stream.
var errBehind = errors.New("the stream no longer holds the records after the local journal's last")

func (f *follower) session(ctx context.Context, catchUp time.Duration) error {
	js, st, closeConn, err := openJetStream(ctx, f.nats, f.stream)
	if err != nil {
		return err
	}
	defer closeConn()
	id, err := streamJournalID(ctx, f.nats, f.stream)
	if err != nil {
		return err
	}
	j, err := journal.Open(f.dir, journal.Options{ID: id, Logger: f.log})
	if err != nil {
		return err
	}
	if j.ID() != id {
		j.Close()
		return f.moveAside(fmt.Sprintf("it is journal %s, the stream journal %s", j.ID(), id))
	}
	err = f.follow(ctx, js, st, j, catchUp)
	j.Close()
	if errors.Is(err, errFork) || errors.Is(err, errBehind) {
		return f.moveAside(err.Error())
	}
	return err
}

func (f *follower) moveAside(why string) error {
	if f.movedAside {
		return fmt.Errorf("the stream does not continue the journal rebuilt from it (%s): not moving it aside again", why)
	}
	f.movedAside = true
	aside := fmt.Sprintf("%s.fork-%s", f.dir, time.Now().UTC().Format("20060102T150405Z"))
	f.log.Warn("follow: the local journal does not continue the stream; moving it aside and rebuilding from the stream", "why", why, "moved_to", aside)
	if err := os.Rename(f.dir, aside); err != nil {
		return fmt.Errorf("moving %s aside: %w", f.dir, err)
	}
	return errors.New("rebuilding from the stream")
}

func (f *follower) follow(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, j *journal.Journal, catchUp time.Duration) error {
	// A new standby, of a stream whose limits removed its record 1: its
	// journal starts at the newest checkpoint beside the stream.
	seeded, err := ctl.SeedFromStream(ctx, js, st, f.stream, j)
	if err != nil {
		return err
	}
	if seeded > 0 {
		f.log.Info("follow: the stream no longer holds record 1: the journal starts at the leader's checkpoint beside it",
			"checkpoint", seeded, "bucket", journal.CheckpointBucket(f.stream))
	}
	books, err := loadCheckpoint(j)
	if err != nil {
		return err
	}
	if err := foldFrom(ctx, j, books); err != nil {
		return err
	}
	last, head := j.Last()
	lastCkpt := books.State.Seq
	apply := func(ctx context.Context, r journal.Record) error {
		switch {
		case r.Seq < last:
			return nil
		case r.Seq == last:
			if r.Hash != head {
				return fmt.Errorf("%w: record %d differs", errFork, r.Seq)
			}
			return nil
		case r.Seq > last+1 && last == 0:
			// The stream's limits removed its record 1 after the
			// journal was found empty: start again, from a checkpoint.
			return fmt.Errorf("the stream now starts at record %d", r.Seq)
		case r.Seq > last+1:
			return fmt.Errorf("%w: the stream's next record is %d, the journal ends at %d", errBehind, r.Seq, last)
		case r.Prev != head && last == 0:
			return fmt.Errorf("the stream's record 1 links to %x: it is not the start of a journal", r.Prev[:6])
		case r.Prev != head:
			return fmt.Errorf("%w: record %d does not link to the journal's %d", errFork, r.Seq, last)
		}
		if err := j.Import(ctx, r); err != nil {
			return err
		}
		if err := books.Apply(r); err != nil {
			return err
		}
		last, head = r.Seq, r.Hash
		if f.ckpt.Every == 0 || last-lastCkpt < f.ckpt.Every {
			return nil
		}
		lastCkpt = last
		err := saveCheckpoint(j, last, books)
		if err == nil {
			err = j.Retain(ctx, journal.Retention{MaxAge: f.ckpt.RetainAge, MaxBytes: f.ckpt.RetainBytes}, min(books.TraceFrom(), last+1), time.Now())
		}
		if err != nil && ctx.Err() == nil {
			f.log.Warn("follow: checkpoint", "err", err)
		}
		return nil
	}
	// The stream's sequence is the record's when one journal filled it
	// from record 1: start at the journal's last record, to check the
	// join, and follow until ctx ends.
	f.log.Info("follow: following the leader's stream", "journal", j.ID(), "from", last+1)
	err = ctl.ConsumeStream(ctx, st, j.ID(), max(last, 1), 0, apply)
	if ctx.Err() == nil {
		return err
	}
	// Leading now: first catch up with what the stream holds, for a
	// bounded time: the old leader's last records are there.
	bg := context.WithoutCancel(ctx)
	info, err := st.Info(bg)
	if err != nil {
		return err
	}
	if last >= info.State.LastSeq {
		return nil
	}
	cctx, cancel := context.WithTimeout(bg, catchUp)
	defer cancel()
	return ctl.ConsumeStream(cctx, st, j.ID(), last+1, info.State.LastSeq, apply)
}
