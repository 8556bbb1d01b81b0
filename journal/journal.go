package journal

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Journal is an append-only log of Records in a Pebble store.
//
// Invariants, for every record the journal has acknowledged:
//   - sequences start at 1 and increase by one, with no gaps;
//   - Record.Prev is the Hash of the record before (zero for record 1);
//   - Record.Time never decreases along the log;
//   - a cursor written with an Append is durable in the same batch as the
//     records of that Append, never before them.
//
// A Journal is safe for concurrent use.
type Journal struct {
	db   *pebble.DB
	dir  string
	id   string
	opts Options
	sync *pebble.WriteOptions

	// reqs carries Append calls to the committer goroutine, the only writer
	// of log keys. Sends happen under rw.RLock so Close can know none is in
	// flight (see Close).
	reqs chan *appendReq
	quit chan struct{} // closed by Close once no Append can enqueue
	done chan struct{} // closed when the committer has exited

	// Owned by the committer goroutine: the tail it chains new records to.
	tailSeq  uint64
	tailHash [32]byte
	tailTime time.Time

	// applied is the highest sequence handed to Pebble (set just before
	// Commit); committed <= applied, equal unless a commit is in flight
	// (or failed: the next batch then reuses the sequences).
	applied atomic.Uint64
	// committed is the highest sequence whose batch commit has returned.
	// Readers never look past it, so nothing is read (or published) before
	// its synced commit has returned to the committer.
	committed atomic.Uint64

	mu       sync.Mutex
	lastHash [32]byte      // hash of record `committed`; guarded by mu
	notify   chan struct{} // closed and replaced after each commit; guarded by mu
	start    anchor        // where the log starts (after Prune); guarded by mu

	pruneMu sync.Mutex // one Prune at a time
	ckptMu  sync.Mutex // one CheckpointWriter at a time, from NewCheckpoint to Commit or Abort

	// Commit statistics, for tests and benchmarks.
	batches    atomic.Uint64 // synced batches that held at least one record
	maxRecords atomic.Uint64 // most records seen in one batch

	closed   atomic.Bool
	diskFull atomic.Bool // commits wait for space (waitForSpace)
	// rw is held shared by every use of db and every enqueue, exclusively
	// by Close before it closes db.
	rw sync.RWMutex
}

// Cursor is a named position (a watch's resourceVersion, a consumer's
// progress) stored under its own key.
type Cursor struct {
	Name  string
	Value string
}

// Open opens or creates the journal in dir. It recovers the tail (last
// sequence, hash and time) from the last record, checking that record's
// checksum; Verify checks the rest.
func Open(dir string, opts Options) (*Journal, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	db, err := pebble.Open(dir, pebbleOptions(opts))
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	j := &Journal{
		db:     db,
		dir:    dir,
		opts:   opts,
		sync:   pebble.Sync,
		reqs:   make(chan *appendReq, opts.MaxBatch),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		notify: make(chan struct{}),
	}
	if opts.NoSync {
		j.sync = pebble.NoSync
	}
	if err := j.loadID(); err != nil {
		db.Close()
		return nil, err
	}
	if err := j.loadStart(); err != nil {
		db.Close()
		return nil, err
	}
	if err := j.loadTail(); err != nil {
		db.Close()
		return nil, err
	}
	if err := removeTables(dir); err != nil {
		db.Close()
		return nil, err
	}
	go j.commitLoop()
	return j, nil
}

// loadID reads the journal ID, creating it on first open.
func (j *Journal) loadID() error {
	v, ok, err := j.getFramed(metaKey(metaID))
	if err != nil {
		return fmt.Errorf("journal: read id: %w", err)
	}
	if ok {
		j.id = string(v)
		return nil
	}
	id := j.opts.ID
	if id == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("journal: generate id: %w", err)
		}
		id = hex.EncodeToString(b[:])
	}
	if err := j.db.Set(metaKey(metaID), frame([]byte(id)), pebble.Sync); err != nil {
		return fmt.Errorf("journal: write id: %w", err)
	}
	j.id = id
	return nil
}

// loadTail positions the committer after the last record.
func (j *Journal) loadTail() error {
	it, err := j.db.NewIter(&pebble.IterOptions{LowerBound: logStart, UpperBound: logEnd})
	if err != nil {
		return fmt.Errorf("journal: open iterator: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return err
		}
		// No record: a new journal, or one pruned to its last record,
		// which then continues from the checkpoint's anchor.
		j.tailSeq, j.tailHash, j.tailTime = j.start.First-1, j.start.Hash, j.start.Time
		j.lastHash = j.start.Hash
		j.committed.Store(j.start.First - 1)
		j.applied.Store(j.start.First - 1)
		return nil
	}
	seq, ok := seqOfKey(it.Key())
	if !ok {
		return &LinkError{Err: fmt.Errorf("%w: malformed log key %x", ErrCorrupt, it.Key())}
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return fmt.Errorf("journal: read record %d: %w", seq, err)
	}
	r, err := DecodeRecord(v)
	if err != nil {
		return &LinkError{Seq: seq, Err: err}
	}
	if r.Seq != seq {
		return &LinkError{Seq: seq, Err: fmt.Errorf("%w: stored under %d, says %d", ErrBrokenChain, seq, r.Seq)}
	}
	j.tailSeq, j.tailHash, j.tailTime = r.Seq, r.Hash, r.Time
	j.lastHash = r.Hash
	j.committed.Store(r.Seq)
	j.applied.Store(r.Seq)
	return nil
}

// ID is the journal's random identity, fixed at creation.
func (j *Journal) ID() string { return j.id }

// Last returns the last committed sequence and its hash (0 and zero for an
// empty journal).
func (j *Journal) Last() (seq uint64, hash [32]byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.committed.Load(), j.lastHash
}

// Cursor returns the value of the named cursor, and false when it was never
// written. A cursor written by Append is returned only once the records
// committed with it are readable (Read, Follow), never a moment before.
func (j *Journal) Cursor(name string) (string, bool, error) {
	v, seq, ok, err := j.readCursor(name)
	if err != nil || !ok {
		return "", false, err
	}
	// NB: Pebble makes a batch visible just before Commit returns to the
	// committer, and readers are bounded by committed, set just after. Wait
	// out that window so a caller never holds a cursor ahead of what it can
	// read. It is short: the batch is already durable.
	if seq > j.applied.Load() {
		// Only possible if the store was altered: no batch ever held it.
		return "", false, fmt.Errorf("journal: cursor %q: %w: covers record %d, journal ends at %d",
			name, ErrCorrupt, seq, j.applied.Load())
	}
	for {
		ch := j.Notify()
		if j.committed.Load() >= seq {
			return v, true, nil
		}
		if j.closed.Load() {
			return "", false, ErrClosed
		}
		<-ch
	}
}

func (j *Journal) readCursor(name string) (value string, seq uint64, ok bool, err error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return "", 0, false, ErrClosed
	}
	p, ok, err := j.getFramed(cursorKey(name))
	if err == nil && ok && len(p) < 8 {
		err = fmt.Errorf("%w: cursor value is %d bytes", ErrCorrupt, len(p))
	}
	if err != nil {
		return "", 0, false, fmt.Errorf("journal: cursor %q: %w", name, err)
	}
	if !ok {
		return "", 0, false, nil
	}
	return string(p[8:]), binary.BigEndian.Uint64(p), true, nil
}

// cursorValue is a cursor as stored: the sequence of the last record
// committed with (or before) it, then the value.
func cursorValue(seq uint64, value string) []byte {
	p := make([]byte, 8, 8+len(value))
	binary.BigEndian.PutUint64(p, seq)
	return frame(append(p, value...))
}

// SetCursor writes a cursor outside any Append, without fsync. It is for a
// consumer's own progress (the outbox's published-up-to mark): losing the
// latest value in a crash only makes that consumer redo some records, which
// it must tolerate anyway. A cursor that describes what records cover (a
// watch's resourceVersion) must go through Append instead.
func (j *Journal) SetCursor(c Cursor) error {
	if c.Name == "" {
		return errors.New("journal: cursor with empty name")
	}
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return ErrClosed
	}
	v := cursorValue(j.committed.Load(), c.Value)
	if err := j.db.Set(cursorKey(c.Name), v, pebble.NoSync); err != nil {
		return fmt.Errorf("journal: set cursor %q: %w", c.Name, err)
	}
	return nil
}

// getFramed reads a framed value (cursor, metadata) and returns a copy of
// its payload. The caller holds rw or is Open.
func (j *Journal) getFramed(key []byte) ([]byte, bool, error) {
	v, closer, err := j.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	p, err := unframe(v)
	if err != nil {
		return nil, false, err
	}
	return append([]byte(nil), p...), true, nil
}

// Notify returns a channel closed at the next commit (or at Close). Take it
// before reading, then wait on it, and no commit is missed.
func (j *Journal) Notify() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.notify
}

// published makes a commit visible: Last, readers' upper bound, waiters.
func (j *Journal) published(seq uint64, hash [32]byte) {
	j.mu.Lock()
	j.lastHash = hash
	j.committed.Store(seq)
	old := j.notify
	j.notify = make(chan struct{})
	j.mu.Unlock()
	close(old)
}

// Close stops accepting appends, commits those already queued, waits for
// running reads to notice and closes the store. Reads and Follows in
// progress end with ErrClosed.
func (j *Journal) Close() error {
	if j.closed.Swap(true) {
		return ErrClosed
	}
	// Wake followers so they see closed and return.
	j.mu.Lock()
	close(j.notify)
	j.notify = make(chan struct{})
	j.mu.Unlock()
	// NB: the order matters. Once rw is held exclusively no Append is
	// between its closed check and its send, so after quit the committer
	// can drain reqs to empty and know nothing more will arrive.
	j.rw.Lock()
	defer j.rw.Unlock()
	close(j.quit)
	<-j.done
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("journal: close: %w", err)
	}
	return nil
}
