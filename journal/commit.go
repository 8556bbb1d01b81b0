package journal

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"time"
)

// appendReq is one Append call waiting for the committer.
type appendReq struct {
	cursors []Cursor
	entries []Entry
	// imported are records of another copy of this journal, written as
	// they are (Import); a request holds entries or imported, not both.
	imported []Record
	// seed starts an empty journal at a checkpoint (Seed); a request
	// holds nothing else.
	seed *seedReq
	done chan appendResult // buffered 1: the committer never blocks on a caller
}

type appendResult struct {
	recs []Record
	err  error
}

// Append commits entries as consecutive records, and cursors with them, in
// one atomic batch, and returns the records once that batch is durable
// (fsynced, unless Options.NoSync).
//
// Concurrent Appends are group-committed: a single committer goroutine
// gathers whatever calls are waiting (up to Options.MaxBatch records) into
// one Pebble batch and one fsync. The entries of one call are never split
// or interleaved with another's.
//
// While the filesystem is short of Options.MinFreeBytes, commits wait for
// space (DiskFull reports it) and so do the Appends queued meanwhile.
//
// ctx bounds only the wait to be queued. NB: once queued, Append waits for
// the outcome whatever ctx does, because the records may already be on
// disk; returning ctx.Err() then would tell the caller "not written" about
// records that were.
//
// An entry with an unknown Kind fails the whole call with ErrUnknownKind
// and nothing is written. Record.Body aliases Entry.Body.
func (j *Journal) Append(ctx context.Context, cursors []Cursor, entries ...Entry) ([]Record, error) {
	for i, e := range entries {
		if !e.Kind.Valid() {
			return nil, fmt.Errorf("journal: append entry %d (key %q): %w: %d", i, e.Key, ErrUnknownKind, uint8(e.Kind))
		}
		if e.Key == "" {
			return nil, fmt.Errorf("journal: append entry %d: empty key", i)
		}
	}
	for i, c := range cursors {
		if c.Name == "" {
			return nil, fmt.Errorf("journal: append cursor %d: empty name", i)
		}
	}
	if len(entries) == 0 && len(cursors) == 0 {
		return nil, nil
	}
	req := &appendReq{cursors: cursors, entries: entries, done: make(chan appendResult, 1)}
	if err := j.enqueue(ctx, req); err != nil {
		return nil, err
	}
	res := <-req.done
	return res.recs, res.err
}

func (j *Journal) enqueue(ctx context.Context, req *appendReq) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("journal: append: %w", err)
	}
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return ErrClosed
	}
	select {
	case j.reqs <- req:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("journal: append: %w", ctx.Err())
	}
}

// commitLoop is the committer: the only goroutine that writes log keys and
// the owner of tailSeq/tailHash/tailTime. It exits when quit is closed and
// reqs is empty, having committed everything queued before Close.
func (j *Journal) commitLoop() {
	defer close(j.done)
	var carry *appendReq // a request that did not fit the previous batch
	group := make([]*appendReq, 0, 64)
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-j.reqs:
			case <-j.quit:
				select {
				case first = <-j.reqs:
				default:
					return
				}
			}
		}
		// Gather without waiting: whatever queued up during the previous
		// fsync rides on the next one. No timer is needed for batching to
		// happen under load, and an idle journal commits at once.
		group = append(group[:0], first)
		n := first.size()
		yielded := false
	gather:
		for n < j.opts.MaxBatch {
			select {
			case r := <-j.reqs:
				if n+r.size() > j.opts.MaxBatch {
					carry = r
					break gather
				}
				group = append(group, r)
				n += r.size()
			default:
				if yielded {
					break gather
				}
				// NB: the writers answered by the last commit are runnable
				// but may not have run yet (two cores, many goroutines);
				// without this yield the next batch holds whichever one ran
				// first and the writers split into alternating half-batches.
				// Gosched costs well under a microsecond when nobody waits.
				yielded = true
				runtime.Gosched()
			}
		}
		if err := j.waitForSpace(); err != nil {
			// Closed while the disk was full: what is queued cannot be
			// written, and its callers hear so.
			for _, req := range group {
				req.done <- appendResult{err: err}
			}
			for {
				select {
				case req := <-j.reqs:
					req.done <- appendResult{err: err}
				default:
					return
				}
			}
		}
		j.commit(group, n)
		clear(group) // drop references to answered requests
	}
}

// commit writes group as one batch and answers every request in it. On
// error nothing is written and the tail does not move, so the next batch
// reuses the same sequences.
func (j *Journal) commit(group []*appendReq, n int) {
	results := make([]appendResult, len(group))
	err := j.writeBatch(group, n, results)
	for i, req := range group {
		if err != nil {
			req.done <- appendResult{err: err}
			continue
		}
		req.done <- results[i]
	}
}

func (j *Journal) writeBatch(group []*appendReq, n int, results []appendResult) error {
	b := j.db.NewBatch()
	defer b.Close()

	// One timestamp per batch: records committed together share an instant,
	// and it never goes backwards even if the wall clock does.
	t := j.opts.Now()
	if t.Before(j.tailTime) {
		t = j.tailTime
	}
	// Strip the monotonic reading and location so a record compares equal
	// to itself read back from disk.
	t = time.Unix(0, t.UnixNano()).UTC()

	seq, prev := j.tailSeq, j.tailHash
	var seeded *anchor
	recs := make([]Record, n) // one allocation shared by the whole batch
	for i, req := range group {
		if req.seed != nil {
			if seq != 0 || j.startAnchor().First != 1 {
				results[i] = appendResult{err: fmt.Errorf("journal: seed at %d: the journal holds records up to %d: only an empty journal is seeded", req.seed.start.First-1, seq)}
				continue
			}
			a := req.seed.start
			if err := b.Set(checkpointKey(a.First-1), req.seed.head, nil); err != nil {
				return err
			}
			if err := b.Set(metaKey(metaStart), a.encode(), nil); err != nil {
				return err
			}
			seq, prev, t, seeded = a.First-1, a.Hash, a.Time, &a
			continue
		}
		if req.imported != nil {
			for _, r := range req.imported {
				if r.Seq != seq+1 || r.Prev != prev {
					return fmt.Errorf("journal: import record %d: %w: the journal ends at %d (hash %x), the record links to %x",
						r.Seq, ErrBrokenChain, seq, prev[:6], r.Prev[:6])
				}
				v, h, err := encodeRecord(&r)
				if err != nil {
					return err
				}
				if h != r.Hash {
					return fmt.Errorf("journal: import record %d: %w: its content does not hash to its hash", r.Seq, ErrCorrupt)
				}
				if err := b.Set(logKey(r.Seq), v, nil); err != nil {
					return fmt.Errorf("journal: batch record %d: %w", r.Seq, err)
				}
				seq, prev = r.Seq, h
				t = r.Time // the imported record's time is the tail's
			}
			results[i] = appendResult{recs: req.imported}
			continue
		}
		out := recs[:len(req.entries):len(req.entries)]
		recs = recs[len(req.entries):]
		for k, e := range req.entries {
			seq++
			r := Record{Seq: seq, Time: t, Kind: e.Kind, Key: e.Key, Body: e.Body, Prev: prev}
			v, h, err := encodeRecord(&r)
			if err != nil {
				return err
			}
			r.Hash = h
			prev = h
			if err := b.Set(logKey(seq), v, nil); err != nil {
				return fmt.Errorf("journal: batch record %d: %w", seq, err)
			}
			out[k] = r
		}
		// The cursors of a request go after its records in the same batch:
		// the batch is atomic, so a crash can never leave them ahead.
		for _, c := range req.cursors {
			if err := b.Set(cursorKey(c.Name), cursorValue(seq, c.Value), nil); err != nil {
				return fmt.Errorf("journal: batch cursor %q: %w", c.Name, err)
			}
		}
		results[i] = appendResult{recs: out}
	}
	j.applied.Store(seq) // before Commit: the batch may become visible inside it
	if err := b.Commit(j.sync); err != nil {
		return fmt.Errorf("journal: commit records %d..%d: %w", j.tailSeq+1, seq, err)
	}
	if seeded != nil {
		// Before published: a reader that sees the seeded tail sees
		// where the log starts too.
		j.mu.Lock()
		j.start = *seeded
		j.mu.Unlock()
	}
	if seq != j.tailSeq {
		j.batches.Add(1)
		if k := seq - j.tailSeq; k > j.maxRecords.Load() {
			j.maxRecords.Store(k)
		}
		j.tailSeq, j.tailHash, j.tailTime = seq, prev, t
		j.published(seq, prev)
	}
	return nil
}

// waitForSpace holds the committer while the journal's filesystem has
// less than MinFreeBytes free, checking twice a second, and returns nil
// once there is room again or ErrDiskFull if the journal closes first.
//
// A full disk is the one failure Pebble does not survive (a commit that
// cannot write its WAL is fatal), so the journal never lets a commit meet
// it. Appends wait meanwhile; as no action is taken before its intent is
// journaled, nothing is written to pods either, and no gate is released
// or added. The controller reports it (DiskFull) and carries on by itself
// once space returns.
func (j *Journal) waitForSpace() error {
	if j.enoughSpace(0) {
		return nil
	}
	j.diskFull.Store(true)
	defer j.diskFull.Store(false)
	j.opts.Logger.Error("journal: disk full: commits wait until space returns", "dir", j.dir, "min_free_bytes", j.opts.MinFreeBytes)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-j.quit:
			return ErrDiskFull
		case <-tick.C:
		}
		if j.enoughSpace(0) {
			j.opts.Logger.Info("journal: disk space is back: committing again", "dir", j.dir)
			return nil
		}
	}
}

// enoughSpace reports whether the filesystem has MinFreeBytes free, and
// extra more, for an unprivileged writer. A statfs error says nothing
// about space: go on, and let Pebble report what is wrong.
func (j *Journal) enoughSpace(extra uint64) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(j.dir, &st); err != nil {
		return true
	}
	return st.Bavail*uint64(st.Bsize) >= j.opts.MinFreeBytes+extra
}

// DiskFull reports whether commits are waiting for disk space.
func (j *Journal) DiskFull() bool { return j.diskFull.Load() }

func (r *appendReq) size() int { return len(r.entries) + len(r.imported) }

// Import appends records of another copy of this journal (its NATS
// stream, an export) exactly as they are: each must be the next sequence
// and link to the journal's last record, and its content must hash to its
// Hash. It is how a journal is restored from the stream after a disk is
// lost, or refilled after Truncate, so that it continues the same chain.
// On error nothing of the call is written.
func (j *Journal) Import(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	req := &appendReq{imported: recs, done: make(chan appendResult, 1)}
	if err := j.enqueue(ctx, req); err != nil {
		return err
	}
	return (<-req.done).err
}
