package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// loadCheckpoint returns the state as of the journal's latest checkpoint,
// or an empty one at record 0 when there is none. A checkpoint this binary
// cannot read is passed over for the full journal when the journal still
// holds it; a pruned journal without a readable checkpoint is an error
// that says how to recover, never a silent empty state.
func loadCheckpoint(j *journal.Journal) (*projections.Books, error) {
	d := projections.NewBooks()
	c, ok, err := j.LatestCheckpoint(0)
	if err != nil || !ok {
		return d, err
	}
	err = journal.DecodeCheckpoint(c.Data, d)
	if err == nil && d.State.Seq != c.Seq {
		err = fmt.Errorf("it holds the state at record %d", d.State.Seq)
	}
	if err == nil {
		return d, nil
	}
	if j.First() == 1 {
		return projections.NewBooks(), nil // fold everything instead
	}
	return nil, fmt.Errorf("the journal starts at record %d and its checkpoint at record %d does not load (%w): "+
		"run the rollbook version that wrote it, or move the journal directory aside to start afresh from the cluster", j.First(), c.Seq, err)
}

// foldFrom folds the journal's records after d into d.
func foldFrom(ctx context.Context, j *journal.Journal, d *projections.Books) error {
	if first := j.First(); d.State.Seq+1 < first {
		return fmt.Errorf("the journal starts at record %d, after the checkpoint at %d", first, d.State.Seq)
	}
	return j.Read(ctx, d.State.Seq+1, d.Apply)
}

// checkpointOptions say when a controller writes checkpoints and what it
// keeps.
type checkpointOptions struct {
	// Every and Interval: a checkpoint once Every records have been
	// folded since the last, or once Interval has passed with at least
	// Every/100 (and at least one).
	Every    uint64
	Interval time.Duration
	// RetainAge and RetainBytes bound the journal: records older than
	// RetainAge, or the oldest while the log is over RetainBytes, are
	// pruned down to a checkpoint. 0 keeps everything.
	RetainAge   time.Duration
	RetainBytes uint64
	// ShipEvery: how often the newest checkpoint the stream holds the
	// record of is copied beside it (journal.ShipCheckpoints), for the
	// readers of a stream whose limits removed its start. 0 means an
	// hour; below 0, never.
	ShipEvery time.Duration
}

// checkpointLoop writes checkpoints and applies retention until ctx ends.
func (c *controller) checkpointLoop(ctx context.Context) error {
	o := c.opts.Checkpoints
	if o.Every == 0 && o.Interval == 0 {
		return nil
	}
	every := time.Second
	if o.Interval > 0 {
		every = min(every, max(o.Interval, 10*time.Millisecond))
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := c.folded.Load()
	lastAt, retainedAt := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		// Retention by age goes on while idle, when no checkpoint is due.
		if time.Since(retainedAt) >= max(o.Interval, time.Minute) {
			retainedAt = time.Now()
			if err := c.retain(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("retention: not pruned", "err", err)
			}
		}
		// By count, or by time once a hundredth of the count has come:
		// an idle controller's heartbeat Ticks are not worth a checkpoint
		// (megabytes at 10,000 pods), and start-up folds them in no time.
		n := c.folded.Load() - last
		byCount := o.Every > 0 && n >= o.Every
		byTime := o.Interval > 0 && time.Since(lastAt) >= o.Interval && n > 0 && n >= o.Every/100
		if !byCount && !byTime {
			continue
		}
		seq, err := c.checkpoint()
		if err != nil {
			if errors.Is(err, journal.ErrClosed) {
				return nil
			}
			c.log.Warn("checkpoint: not written; start-up will read more of the journal", "err", err)
			continue
		}
		last, lastAt, retainedAt = seq, time.Now(), time.Now()
		if err := c.retain(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("retention: not pruned", "err", err)
		}
	}
}

// checkpoint saves the folded state and returns the record it is at. The
// state is encoded straight into the journal, a piece at a time, under
// the fold's lock; the synced commit that makes it visible waits outside.
func (c *controller) checkpoint() (uint64, error) {
	start := time.Now()
	c.mu.Lock()
	seq := c.books.State.Seq
	w, err := c.j.NewCheckpoint(seq)
	if err != nil {
		c.mu.Unlock()
		return 0, err
	}
	defer w.Abort()
	err = w.Encode(c.books)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := w.Commit()
	if err != nil {
		return 0, err
	}
	c.checkpoints.Add(1)
	c.log.Debug("checkpoint: written", "seq", seq, "bytes", n, "took", time.Since(start))
	return seq, nil
}

// saveCheckpoint writes books as the checkpoint at seq, straight into the
// journal.
func saveCheckpoint(j *journal.Journal, seq uint64, books *projections.Books) error {
	w, err := j.NewCheckpoint(seq)
	if err != nil {
		return err
	}
	defer w.Abort()
	if err := w.Encode(books); err != nil {
		return err
	}
	_, err = w.Commit()
	return err
}

// retain prunes the journal as retention allows, never past what still
// needs its records: the outbox until they are published (the stream is
// the audit copy: nothing leaves the journal before it is there), and the
// trace of a rollout still running (its spans are rebuilt from its first
// record after a restart).
func (c *controller) retain(ctx context.Context) error {
	o := c.opts.Checkpoints
	c.mu.Lock()
	floor := c.books.TraceFrom() // records from here on stay
	c.mu.Unlock()
	if c.ob != nil {
		floor = min(floor, c.ob.Published()+1)
	}
	before := c.j.First()
	err := c.j.Retain(ctx, journal.Retention{MaxAge: o.RetainAge, MaxBytes: o.RetainBytes}, floor, time.Now())
	if first := c.j.First(); first != before {
		c.log.Info("retention: pruned the journal", "through", first-1, "first", first)
	}
	return err
}

// knownFrom lists what ingest journaled, from the state: every object the
// state holds is there as of its last Observed record.
func knownFrom(s *projections.State) map[string]ingest.KnownObject {
	out := make(map[string]ingest.KnownObject, len(s.Pods)+len(s.Revisions)+len(s.Workloads)+len(s.Nodes)+len(s.Rollouts))
	add := func(o journal.Observed) {
		out[ingest.Key(o.Resource, o.Namespace, o.Name)] = ingest.KnownObject{UID: o.UID, ResourceVersion: o.ResourceVersion}
	}
	for _, p := range s.Pods {
		out[ingest.Key("pods", p.Namespace, p.Name)] = ingest.KnownObject{UID: p.UID.String(), ResourceVersion: p.ResourceVersion.String()}
	}
	for _, r := range s.Rollouts {
		add(r.Observed)
	}
	for _, w := range s.Workloads {
		add(w.Observed)
	}
	for _, r := range s.Revisions {
		add(r.Observed)
	}
	for _, n := range s.Nodes {
		add(n.Observed)
	}
	return out
}
