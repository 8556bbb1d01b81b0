package journal

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// copyAll reads c to its end, stretch by stretch of at most most bytes (a
// piece more than most when one does not fit), and returns the data and
// the stretches' sizes.
func copyAll(t *testing.T, c *CheckpointCopy, most int) ([]byte, []int, error) {
	t.Helper()
	var data []byte
	var sizes []int
	for {
		buf, err := c.Next(nil, most)
		if errors.Is(err, io.EOF) {
			return data, sizes, nil
		}
		if err != nil {
			return data, sizes, err
		}
		data, sizes = append(data, buf...), append(sizes, len(buf))
	}
}

// TestCopyCheckpointInStretches: a copy reads back every checkpoint's data
// whole (none, under, at and over a piece, many pieces), in stretches of
// about the size asked for, and the newest at or below a record.
func TestCopyCheckpointInStretches(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	sizes := []int{0, 1, pieceBytes, 3*pieceBytes + 5, 9 << 20}
	appendEach(t, j, 0, 2*len(sizes))
	for i, n := range sizes {
		seq := uint64(2*i + 1)
		if err := j.SaveCheckpoint(seq, ckptData(seq, n)); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range sizes {
		seq := uint64(2*i + 1)
		c, info, ok, err := j.CopyCheckpoint(seq + 1) // the newest at or below
		if err != nil || !ok || info.Seq != seq || info.Bytes != n {
			t.Fatalf("CopyCheckpoint(%d) = %+v, %v, %v", seq+1, info, ok, err)
		}
		data, stretches, err := copyAll(t, c, 1<<20)
		if err != nil || !bytes.Equal(data, ckptData(seq, n)) {
			t.Fatalf("checkpoint %d: %d bytes copied of %d, or different: %v", seq, len(data), n, err)
		}
		for _, s := range stretches {
			if s > 1<<20 {
				t.Fatalf("checkpoint %d came in stretches of %v bytes, over the 1 MiB asked", seq, stretches)
			}
		}
		if n == 9<<20 && len(stretches) < 9 {
			t.Fatalf("9 MiB came in %d stretches", len(stretches))
		}
		// And as a reader, read in pieces that fit no stretch.
		c, _, _, err = j.CopyCheckpoint(seq)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if _, err := io.CopyBuffer(struct{ io.Writer }{&got}, c.Reader(1<<20), make([]byte, 7777)); err != nil || !bytes.Equal(got.Bytes(), ckptData(seq, n)) {
			t.Fatalf("checkpoint %d read as a reader: %d bytes of %d, or different: %v", seq, got.Len(), n, err)
		}
	}
	if _, _, ok, err := j.CopyCheckpoint(0); !ok || err != nil {
		t.Fatalf("the newest checkpoint: %v, %v", ok, err)
	}
}

// TestCopyCheckpointMeetsAChange: a checkpoint deleted or written again
// while a copy reads it, or the journal closed, ends the copy with an
// error, never with a mix of two checkpoints' data.
func TestCopyCheckpointMeetsAChange(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 10)
	for _, seq := range []uint64{4, 6, 8} {
		if err := j.SaveCheckpoint(seq, ckptData(seq, 4*pieceBytes)); err != nil {
			t.Fatal(err)
		}
	}
	start := func(seq uint64) *CheckpointCopy {
		t.Helper()
		c, info, ok, err := j.CopyCheckpoint(seq)
		if err != nil || !ok || info.Seq != seq {
			t.Fatalf("CopyCheckpoint(%d) = %+v, %v, %v", seq, info, ok, err)
		}
		if _, err := c.Next(nil, pieceBytes); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := start(4)
	if err := j.deleteCheckpoint(4); err != nil {
		t.Fatal(err)
	}
	if _, _, err := copyAll(t, c, pieceBytes); err == nil || !strings.Contains(err.Error(), "deleted while it was read") {
		t.Fatalf("a deleted checkpoint's copy went on: %v", err)
	}
	c = start(6)
	if err := j.SaveCheckpoint(6, ckptData(60, 4*pieceBytes)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := copyAll(t, c, pieceBytes); err == nil || !strings.Contains(err.Error(), "written again while it was read") {
		t.Fatalf("a rewritten checkpoint's copy went on: %v", err)
	}
	c = start(8)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := copyAll(t, c, pieceBytes); !errors.Is(err, ErrClosed) {
		t.Fatalf("a copy after Close: %v", err)
	}
}
