package journal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"

	"github.com/cockroachdb/pebble/v2"
)

// pieceBytes is the size of a checkpoint's pieces (the last is shorter):
// what writing one holds in memory, whatever the checkpoint's size.
const pieceBytes = 256 << 10

// CheckpointWriter writes one checkpoint: see NewCheckpoint.
type CheckpointWriter struct {
	j     *Journal
	head  checkpointHead
	buf   bytes.Buffer // data not yet in a piece
	table *tableFile   // the pieces so far; nil before the first
	value []byte       // a piece as stored, reused
	err   error        // the first failure; the checkpoint is then abandoned
	ended bool
	// ingested: the pieces are in the journal (Commit got that far).
	ingested bool
	// seed, when not nil, makes Commit start an empty journal at this
	// checkpoint (Seed), bounded by it while queued for the committer.
	seed context.Context
}

// NewCheckpoint starts the checkpoint at record seq, which must be
// committed and not pruned. Its data, what Encode and Write are given in
// that order, is cut in pieces of 256 KiB as it comes, each written to a
// table file of its own beside the journal (tableFile): writing a
// checkpoint holds a piece in memory, not the checkpoint. Commit then
// ingests the table into the journal (Pebble links the file in, synced)
// and writes the checkpoint's head, synced, which makes it visible.
//
// The pieces never pass through Pebble's memtables and write-ahead log:
// a 10,000-pod fleet's checkpoint is 17 MiB, which written as batches
// was written twice (the log, then the flushed memtables) and needed
// memtables of several MiB, held by the controller all its life, for
// Pebble to take it without allocating more than its size
// (TestCheckpointWriteAllocatesLessThanItsSize).
//
// Until Commit returns no reader sees any of it; a crash before the
// ingestion leaves a table file that the next Open deletes, and a crash
// after it pieces that no head names, which the next Commit at or above
// them, or a Prune past them, deletes. Committing at a seq that has a
// checkpoint replaces it, atomically.
//
// One checkpoint is written at a time: NewCheckpoint waits while another
// is open. Every writer must end with Commit or Abort (Abort after Commit
// does nothing, so `defer w.Abort()` is the way to write one).
func (j *Journal) NewCheckpoint(seq uint64) (*CheckpointWriter, error) {
	j.ckptMu.Lock()
	w, err := j.newCheckpoint(seq)
	if err != nil {
		j.ckptMu.Unlock()
		return nil, err
	}
	return w, nil
}

func (j *Journal) newCheckpoint(seq uint64) (*CheckpointWriter, error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return nil, ErrClosed
	}
	if seq == 0 || seq > j.committed.Load() {
		return nil, fmt.Errorf("journal: checkpoint at %d: not a committed record (last is %d)", seq, j.committed.Load())
	}
	r, err := j.record(seq)
	if err != nil {
		return nil, fmt.Errorf("journal: checkpoint at %d: %w", seq, err)
	}
	var gen [8]byte
	if _, err := rand.Read(gen[:]); err != nil {
		return nil, fmt.Errorf("journal: checkpoint at %d: %w", seq, err)
	}
	w := &CheckpointWriter{
		j:    j,
		head: checkpointHead{Seq: seq, Hash: r.Hash[:], Time: r.Time.UnixNano(), Gen: binary.BigEndian.Uint64(gen[:])},
	}
	w.buf.Grow(2 * pieceBytes)
	return w, nil
}

// Encode appends v to the checkpoint's data as core deterministic CBOR:
// the bytes EncodeCheckpoint returns, written piece by piece as they are
// encoded.
func (w *CheckpointWriter) Encode(v any) error {
	if w.ended {
		return errEnded
	}
	if w.err != nil {
		return w.err
	}
	e := pieceEncoder{buf: &w.buf, flush: w.flush}
	if err := e.encode(reflect.ValueOf(v)); err != nil {
		w.fail(fmt.Errorf("journal: encode checkpoint %d: %w", w.head.Seq, err))
	}
	return w.err
}

// Write appends p to the checkpoint's data.
func (w *CheckpointWriter) Write(p []byte) (int, error) {
	if w.ended {
		return 0, errEnded
	}
	n := len(p)
	for len(p) > 0 && w.err == nil {
		k := min(len(p), pieceBytes-w.buf.Len())
		w.buf.Write(p[:k])
		p = p[k:]
		w.flush()
	}
	if w.err != nil {
		return 0, w.err
	}
	return n, nil
}

// flush writes every whole piece buf holds and keeps the rest.
func (w *CheckpointWriter) flush() error {
	if w.buf.Len() < pieceBytes {
		return w.err
	}
	for w.err == nil && w.buf.Len() >= pieceBytes {
		w.put(w.buf.Next(pieceBytes))
	}
	// Move the rest (less than a piece) to the front, so the encoder
	// keeps appending in place.
	rest := w.buf.Bytes()
	w.buf.Reset()
	w.buf.Write(rest)
	return w.err
}

// put writes one piece to the table.
func (w *CheckpointWriter) put(p []byte) {
	j := w.j
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		w.fail(ErrClosed)
		return
	}
	if !j.enoughSpace(2 * uint64(len(p))) { // the table, and a copy should Pebble not link it
		w.fail(fmt.Errorf("journal: checkpoint at %d: %w", w.head.Seq, ErrDiskFull))
		return
	}
	if w.table == nil {
		t, err := createTable(j, w.head.Seq, w.head.Gen)
		if err != nil {
			w.fail(fmt.Errorf("journal: save checkpoint %d: %w", w.head.Seq, err))
			return
		}
		w.table = t
	}
	w.value = append(append(w.value[:0], FormatVersion), p...)
	w.value = binary.BigEndian.AppendUint32(w.value, crc32.Checksum(w.value, crcTable))
	if err := w.table.set(pieceKey(w.head.Seq, w.head.Gen, w.head.Pieces), w.value); err != nil {
		w.fail(fmt.Errorf("journal: save checkpoint %d: %w", w.head.Seq, err))
		return
	}
	w.head.Pieces++
	w.head.Bytes += uint64(len(p))
}

func (w *CheckpointWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Commit writes the last piece and then the head, synced (a checkpoint
// that Prune relies on must survive a crash as surely as the records it
// replaces), which makes the checkpoint visible, and returns the size of
// its data. The same batch
// deletes the pieces no head names between the checkpoint before this one
// and this one (a crash's leftovers), and those of the checkpoint at the
// same record that this one replaces. On error nothing is visible, and
// what was written is deleted.
func (w *CheckpointWriter) Commit() (int, error) {
	if w.ended {
		return 0, errEnded
	}
	if w.buf.Len() > 0 && w.err == nil {
		w.put(w.buf.Bytes())
		w.buf.Reset()
	}
	if w.err == nil && w.table != nil {
		w.ingest()
	}
	if w.err != nil {
		w.Abort()
		return 0, w.err
	}
	commit := w.commit
	if w.seed != nil {
		commit = w.commitSeed
	}
	if err := commit(); err != nil {
		w.fail(err)
		w.Abort()
		return 0, err
	}
	w.end()
	return int(w.head.Bytes), nil
}

// ingest finishes the table and ingests it: its pieces are in the journal,
// where no reader looks for them until the head names them.
func (w *CheckpointWriter) ingest() {
	j := w.j
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		w.fail(ErrClosed)
		return
	}
	if err := w.table.finish(); err != nil {
		w.fail(fmt.Errorf("journal: save checkpoint %d: %w", w.head.Seq, err))
		return
	}
	if err := j.db.Ingest(context.Background(), []string{w.table.path}); err != nil {
		w.fail(fmt.Errorf("journal: save checkpoint %d: ingest its pieces: %w", w.head.Seq, err))
		return
	}
	w.ingested = true
	w.table.remove() // Pebble holds it by a link of its own
}

func (w *CheckpointWriter) commit() error {
	j, h := w.j, w.head
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return ErrClosed
	}
	v, err := encMode.Marshal(h)
	if err != nil {
		return fmt.Errorf("journal: encode checkpoint %d: %w", h.Seq, err)
	}
	// NB: under pruneMu, so that no Prune deletes this checkpoint's
	// pieces (it deletes those below the checkpoint it prunes to) between
	// the check and the commit.
	j.pruneMu.Lock()
	defer j.pruneMu.Unlock()
	if h.Seq+1 < j.First() {
		return fmt.Errorf("journal: checkpoint at %d: the journal was pruned past it (it starts at %d)", h.Seq, j.First())
	}
	orphans := piecesStart // the first piece no head names
	it, err := j.db.NewIter(&pebble.IterOptions{LowerBound: checkpointStart, UpperBound: checkpointKey(h.Seq)})
	if err != nil {
		return fmt.Errorf("journal: open iterator: %w", err)
	}
	if it.Last() {
		prev, _ := seqOfCheckpointKey(it.Key())
		orphans = piecesKey(prev + 1)
	}
	if err := it.Close(); err != nil {
		return err
	}
	b := j.db.NewBatch()
	defer b.Close()
	for _, r := range [][2][]byte{
		{orphans, piecesKey(h.Seq)},
		{piecesKey(h.Seq), pieceKey(h.Seq, h.Gen, 0)},
		{pieceKey(h.Seq, h.Gen, h.Pieces), piecesKey(h.Seq + 1)},
	} {
		if bytes.Compare(r[0], r[1]) >= 0 {
			continue
		}
		if err := b.DeleteRange(r[0], r[1], nil); err != nil {
			return err
		}
	}
	if err := b.Set(checkpointKey(h.Seq), frame(v), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("journal: save checkpoint %d: %w", h.Seq, err)
	}
	return nil
}

var errEnded = errors.New("journal: checkpoint already committed or aborted")

// Abort ends a checkpoint not committed and deletes what it wrote; after
// Commit it does nothing.
func (w *CheckpointWriter) Abort() {
	if w.ended {
		return
	}
	if w.table != nil {
		w.table.remove()
	}
	if w.ingested {
		j := w.j
		j.rw.RLock()
		if !j.closed.Load() {
			// Best effort: what stays is deleted with the next Commit.
			_ = j.db.DeleteRange(pieceKey(w.head.Seq, w.head.Gen, 0), pieceKey(w.head.Seq, w.head.Gen, w.head.Pieces), pebble.NoSync)
		}
		j.rw.RUnlock()
	}
	w.end()
}

func (w *CheckpointWriter) end() {
	w.ended = true
	w.j.ckptMu.Unlock()
}

// readPieces calls fn with each piece of m's data in order, checking that
// every piece is there and intact. fn must not keep the slice.
func readPieces(r pebble.Reader, m ckptMeta, fn func([]byte) error) error {
	n, size, err := piecesFrom(r, m, 0, fn)
	if err != nil {
		return err
	}
	if n != m.Pieces || size != m.Bytes {
		return fmt.Errorf("journal: checkpoint %d: %w: %d of its %d pieces, %d of its %d bytes", m.Seq, ErrCorrupt, n, m.Pieces, size, m.Bytes)
	}
	return nil
}

// piecesFrom calls fn with m's pieces from piece from on, in order, until
// a piece is missing or fn returns an error. It returns the index of the
// piece after the last one handed to fn, and the bytes handed. fn must not
// keep the slice.
func piecesFrom(r pebble.Reader, m ckptMeta, from uint32, fn func([]byte) error) (next uint32, size uint64, err error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: pieceKey(m.Seq, m.Gen, from), UpperBound: pieceKey(m.Seq, m.Gen, m.Pieces)})
	if err != nil {
		return from, 0, fmt.Errorf("journal: open iterator: %w", err)
	}
	defer it.Close()
	next = from
	for valid := it.First(); valid; valid = it.Next() {
		if i, ok := pieceIndex(it.Key()); !ok || i != next {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return next, size, fmt.Errorf("journal: read checkpoint %d: %w", m.Seq, err)
		}
		p, err := unframe(v)
		if err != nil {
			return next, size, fmt.Errorf("journal: checkpoint %d, piece %d: %w", m.Seq, next, err)
		}
		next++
		size += uint64(len(p))
		if err := fn(p); err != nil {
			return next, size, err
		}
	}
	if err := it.Error(); err != nil {
		return next, size, fmt.Errorf("journal: read checkpoint %d: %w", m.Seq, err)
	}
	return next, size, nil
}
