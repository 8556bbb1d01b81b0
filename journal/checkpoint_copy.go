package journal

import (
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// CheckpointCopy reads a checkpoint's data a stretch at a time, and holds
// the journal only while it reads a stretch: for a reader that sends the
// data somewhere slow (the journal API, to a reader across the network),
// which must never hold up the journal's Close, since Close waits for
// every reader.
type CheckpointCopy struct {
	j    *Journal
	m    ckptMeta
	data []byte // a checkpoint in one value (an older binary's): all of it
	next uint32 // the next piece
	size uint64 // the bytes read so far
	done bool
}

// CopyCheckpoint starts a copy of the newest checkpoint at or below record
// atMost (0: the newest of all), and describes it; false when there is
// none.
func (j *Journal) CopyCheckpoint(atMost uint64) (*CheckpointCopy, CheckpointInfo, bool, error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return nil, CheckpointInfo{}, false, ErrClosed
	}
	m, data, ok, err := newestHead(j.db, atMost)
	if !ok || err != nil {
		return nil, CheckpointInfo{}, false, err
	}
	info := CheckpointInfo{Seq: m.Seq, Hash: m.Hash, Time: m.Time, Bytes: int(m.Bytes)}
	return &CheckpointCopy{j: j, m: m, data: data}, info, true, nil
}

// Next appends the next stretch of the data to buf, at least a piece
// (256 KiB at most) and as many more as keep it under most bytes, and
// returns it; io.EOF once all of the data has been read. A checkpoint
// deleted or written again since the copy started (by retention, or by
// Prune) is an error: the copy would mix two.
func (c *CheckpointCopy) Next(buf []byte, most int) ([]byte, error) {
	if c.done {
		return buf, io.EOF
	}
	if c.m.OneValue {
		c.done = true
		return append(buf, c.data...), nil
	}
	j := c.j
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return buf, ErrClosed
	}
	// The head and the pieces in one view: a deletion meanwhile removes
	// both in one batch.
	snap := j.db.NewSnapshot()
	defer snap.Close()
	if err := c.same(snap); err != nil {
		return buf, err
	}
	start := c.next
	next, size, err := piecesFrom(snap, c.m, c.next, func(p []byte) error {
		buf = append(buf, p...)
		if len(buf)+len(p) > most { // the next piece would not fit
			return ErrStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrStop) {
		return buf, err
	}
	c.next, c.size = next, c.size+size
	switch {
	case c.next == c.m.Pieces && c.size == c.m.Bytes:
		c.done = true
	case c.next == start, c.next == c.m.Pieces:
		return buf, fmt.Errorf("journal: checkpoint %d: %w: %d of its %d pieces, %d of its %d bytes", c.m.Seq, ErrCorrupt, c.next, c.m.Pieces, c.size, c.m.Bytes)
	}
	return buf, nil
}

// same checks that the checkpoint the copy reads is still stored as it
// was when the copy started.
func (c *CheckpointCopy) same(r pebble.Reader) error {
	v, closer, err := r.Get(checkpointKey(c.m.Seq))
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("journal: checkpoint %d was deleted while it was read", c.m.Seq)
	}
	if err != nil {
		return fmt.Errorf("journal: read checkpoint %d: %w", c.m.Seq, err)
	}
	defer closer.Close()
	m, _, err := decodeCheckpointMeta(checkpointKey(c.m.Seq), v)
	if err != nil {
		return err
	}
	if m.Gen != c.m.Gen || m.Pieces != c.m.Pieces {
		return fmt.Errorf("journal: checkpoint %d was written again while it was read", c.m.Seq)
	}
	return nil
}

// Reader is the rest of the copy as an io.Reader that reads a stretch of
// most bytes at a time: for a writer that pulls (an object store's Put).
func (c *CheckpointCopy) Reader(most int) io.Reader { return &copyReader{c: c, most: most} }

type copyReader struct {
	c    *CheckpointCopy
	most int
	buf  []byte // the stretch read, from off on not yet handed out
	off  int
}

func (r *copyReader) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		var err error
		if r.buf, err = r.c.Next(r.buf[:0], r.most); err != nil {
			r.buf, r.off = r.buf[:0], 0
			return 0, err
		}
		r.off = 0
	}
	n := copy(p, r.buf[r.off:])
	r.off += n
	return n, nil
}
