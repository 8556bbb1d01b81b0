package journal

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Read calls fn with each committed record from sequence from (or First,
// if later) to the last committed when Read started, in order. Every record's
// checksum, sequence and link to the record before it are checked; the first
// failure ends the read with a *LinkError.
//
// fn may return ErrStop to end early (Read returns nil); any other error
// ends the read and is returned as is. Records passed to fn do not alias
// Pebble's memory and may be kept.
//
// Read holds the journal open while it runs: fn should not block for long,
// and Close makes the read stop with ErrClosed at the next record.
func (j *Journal) Read(ctx context.Context, from uint64, fn func(Record) error) error {
	return j.read(ctx, from, false, func(r Record, _ []byte) error { return fn(r) })
}

// ReadStored is Read that also hands fn each record's stored bytes (what
// DecodeRecord reads), for a reader that sends records on as they are
// stored: encoding the Record again would cost what reading it did. stored
// is valid only during the call, and so is the Record's Body, which is
// part of it (a copy of every body would be most of what reading costs).
func (j *Journal) ReadStored(ctx context.Context, from uint64, fn func(r Record, stored []byte) error) error {
	return j.read(ctx, from, true, fn)
}

func (j *Journal) read(ctx context.Context, from uint64, aliasBody bool, fn func(r Record, stored []byte) error) error {
	from = max(from, j.First())
	hi := j.committed.Load()
	if from > hi {
		return nil
	}
	err := j.scanAliased(ctx, from, hi, aliasBody, fn)
	if errors.Is(err, ErrStop) {
		return nil
	}
	return err
}

// Follow is Read that does not stop at the end: it waits for new commits
// and passes them to fn, until ctx ends (returning ctx.Err()), fn returns an
// error (ErrStop: Follow returns nil) or the journal closes (ErrClosed).
// Projections and the outbox's followers use it.
func (j *Journal) Follow(ctx context.Context, from uint64, fn func(Record) error) error {
	next := max(from, j.First())
	for {
		ch := j.Notify() // before reading, so a commit during the read wakes us
		// A follower that fell behind a Prune goes on from what is kept:
		// retention spares what the controller's consumers need (the
		// outbox, the fold), and a lagging trace exporter loses spans,
		// not its life.
		next = max(next, j.First())
		if hi := j.committed.Load(); hi >= next {
			err := j.scan(ctx, next, hi, func(r Record, _ []byte) error {
				if err := fn(r); err != nil {
					return err
				}
				next = r.Seq + 1
				return nil
			})
			if errors.Is(err, ErrStop) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		select {
		case <-ch:
			if j.closed.Load() {
				return ErrClosed
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Wait blocks until a record after sequence after is committed and returns
// the last committed sequence, or ctx's error, or ErrClosed.
func (j *Journal) Wait(ctx context.Context, after uint64) (uint64, error) {
	for {
		ch := j.Notify()
		if c := j.committed.Load(); c > after {
			return c, nil
		}
		if j.closed.Load() {
			return 0, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// scan reads log records from..to (to == 0: to the end of the keyspace),
// checking each one and its link to the one before, and passes fn each
// record with its stored value. NB: raw aliases Pebble's memory and is valid
// only during the call; the Record does not alias it. fn's errors are
// returned unwrapped.
func (j *Journal) scan(ctx context.Context, from, to uint64, fn func(r Record, raw []byte) error) error {
	return j.scanAliased(ctx, from, to, false, fn)
}

// scanAliased is scan; with aliasBody, each Record's Body is part of raw,
// valid only during the call (decodeRecord).
func (j *Journal) scanAliased(ctx context.Context, from, to uint64, aliasBody bool, fn func(r Record, raw []byte) error) error {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return ErrClosed
	}
	upper := logEnd
	if to != 0 {
		upper = logKey(to + 1)
	}
	it, err := j.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: logKey(from), UpperBound: upper})
	if err != nil {
		return fmt.Errorf("journal: open iterator: %w", err)
	}
	defer it.Close()

	expect := from
	var prev [32]byte
	havePrev := false
	if a := j.startAnchor(); from == a.First && from > 1 {
		// The first record of a pruned log links to its checkpoint.
		prev, havePrev = a.Hash, true
	}
	for valid := it.First(); valid; valid = it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if j.closed.Load() {
			return ErrClosed
		}
		seq, ok := seqOfKey(it.Key())
		if !ok {
			return &LinkError{Seq: expect, Err: fmt.Errorf("%w: malformed log key %x", ErrCorrupt, it.Key())}
		}
		if seq != expect {
			return &LinkError{Seq: expect, Err: fmt.Errorf("%w: record missing, next stored is %d", ErrBrokenChain, seq)}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("journal: read record %d: %w", seq, err)
		}
		r, err := decodeRecord(v, aliasBody)
		if err != nil {
			return &LinkError{Seq: seq, Err: err}
		}
		if r.Seq != seq {
			return &LinkError{Seq: seq, Err: fmt.Errorf("%w: stored under %d, says %d", ErrBrokenChain, seq, r.Seq)}
		}
		if havePrev && r.Prev != prev {
			// Copies: slicing r's own array would move r to the heap
			// for every record, not just this one.
			got, want := r.Prev, prev
			return &LinkError{Seq: seq, Err: fmt.Errorf("%w: prev hash %x does not match hash %x of record %d",
				ErrBrokenChain, got[:6], want[:6], seq-1)}
		}
		if err := fn(r, v); err != nil {
			return err
		}
		prev, havePrev = r.Hash, true
		expect++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("journal: iterate from %d: %w", expect, err)
	}
	if to != 0 && expect != to+1 {
		return &LinkError{Seq: expect, Err: fmt.Errorf("%w: record missing, last committed is %d", ErrBrokenChain, to)}
	}
	return nil
}
