package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ckptData is the data the tests store as the checkpoint at seq: n bytes
// that depend on seq, so that a piece of one checkpoint in another's
// place shows.
func ckptData(seq uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seq, uint64(n)))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

type pieceID struct{ seq, gen uint64 }

// piecesHeld counts the stored pieces of each checkpoint write.
func piecesHeld(t testing.TB, j *Journal) map[pieceID]uint32 {
	t.Helper()
	it, err := j.db.NewIter(&pebble.IterOptions{LowerBound: piecesStart, UpperBound: piecesEnd})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	out := map[pieceID]uint32{}
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		if _, ok := pieceIndex(k); !ok {
			t.Fatalf("malformed piece key %x", k)
		}
		out[pieceID{binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:])}]++
	}
	return out
}

// checkNoOrphans fails unless every stored piece belongs to a stored
// head and every head has all its pieces.
func checkNoOrphans(t testing.TB, j *Journal) {
	t.Helper()
	ms, err := checkpointMetas(j.db)
	if err != nil {
		t.Fatal(err)
	}
	held := piecesHeld(t, j)
	for _, m := range ms {
		if m.OneValue {
			continue
		}
		id := pieceID{m.Seq, m.Gen}
		if held[id] != m.Pieces {
			t.Fatalf("checkpoint %d names %d pieces, %d are stored", m.Seq, m.Pieces, held[id])
		}
		delete(held, id)
	}
	if len(held) > 0 {
		t.Fatalf("pieces no checkpoint names: %v", held)
	}
}

// TestCheckpointInPiecesRoundTrip: data of any size (none, under, at and
// over a piece, many pieces) comes back whole, stored in as many pieces as
// it takes, listed with its size, and verifies.
func TestCheckpointInPiecesRoundTrip(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	sizes := []int{0, 1, pieceBytes - 1, pieceBytes, pieceBytes + 1, 3*pieceBytes + 5, 20 << 20}
	appendEach(t, j, 0, len(sizes))
	for i, n := range sizes {
		seq := uint64(i + 1)
		if err := j.SaveCheckpoint(seq, ckptData(seq, n)); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := j.Checkpoints()
	if err != nil || len(infos) != len(sizes) {
		t.Fatalf("Checkpoints() = %d, %v", len(infos), err)
	}
	ms, err := checkpointMetas(j.db)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range sizes {
		seq := uint64(i + 1)
		c, ok, err := j.LatestCheckpoint(seq)
		if err != nil || !ok || c.Seq != seq {
			t.Fatalf("LatestCheckpoint(%d) = %d, %v, %v", seq, c.Seq, ok, err)
		}
		if !bytes.Equal(c.Data, ckptData(seq, n)) {
			t.Fatalf("checkpoint %d: %d bytes read back, %d written, or different", seq, len(c.Data), n)
		}
		if want := (n + pieceBytes - 1) / pieceBytes; infos[i].Bytes != n || int(ms[i].Pieces) != want {
			t.Fatalf("checkpoint %d listed as %d bytes in %d pieces, want %d in %d", seq, infos[i].Bytes, ms[i].Pieces, n, want)
		}
	}
	checkNoOrphans(t, j)
	if _, err := j.Verify(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointReplacedAtTheSameRecord: saving again at a record
// replaces the checkpoint there, and its pieces go with it.
func TestCheckpointReplacedAtTheSameRecord(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 5)
	if err := j.SaveCheckpoint(5, ckptData(1, 3*pieceBytes)); err != nil {
		t.Fatal(err)
	}
	if err := j.SaveCheckpoint(5, ckptData(2, 10)); err != nil {
		t.Fatal(err)
	}
	c, ok, err := j.LatestCheckpoint(0)
	if err != nil || !ok || !bytes.Equal(c.Data, ckptData(2, 10)) {
		t.Fatalf("after a replacement LatestCheckpoint = %d bytes, %v, %v; want the second", len(c.Data), ok, err)
	}
	checkNoOrphans(t, j)
}

// TestCheckpointNeverSeenHalfWritten: until Commit, no reader sees a
// checkpoint being written; a writer that never commits (its process
// died) leaves a table that the next Open deletes or, dead once its
// pieces were ingested, pieces that no reader sees and that the next
// checkpoint deletes; Abort deletes its own.
func TestCheckpointNeverSeenHalfWritten(t *testing.T) {
	j, dir := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 30)
	if err := j.SaveCheckpoint(10, ckptData(10, 100)); err != nil {
		t.Fatal(err)
	}
	latestIs := func(j *Journal, seq uint64) {
		t.Helper()
		c, ok, err := j.LatestCheckpoint(0)
		if err != nil || !ok || c.Seq != seq || !bytes.Equal(c.Data, ckptData(seq, len(c.Data))) {
			t.Fatalf("LatestCheckpoint = %d, %v, %v; want %d", c.Seq, ok, err, seq)
		}
		infos, err := j.Checkpoints()
		if err != nil || infos[len(infos)-1].Seq != seq {
			t.Fatalf("Checkpoints() = %+v, %v; want the newest at %d", infos, err, seq)
		}
		if _, err := j.Verify(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	w, err := j.NewCheckpoint(20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(ckptData(20, 3*pieceBytes+1)); err != nil {
		t.Fatal(err)
	}
	latestIs(j, 10) // three pieces written, no head
	w.Abort()
	if held := piecesHeld(t, j); len(held) != 1 {
		t.Fatalf("after Abort the pieces held are %v, want only checkpoint 10's", held)
	}
	tables := func() int {
		left, err := os.ReadDir(filepath.Join(dir, tablesDir))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return len(left)
	}
	if n := tables(); n != 0 {
		t.Fatalf("after Abort %d tables are left", n)
	}
	if _, err := w.Commit(); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("Write after Abort succeeded")
	}

	// crash starts a checkpoint at 20, writes three pieces and more into
	// it, does then, and dies: the journal closes under the writer, which
	// never ends, and is opened again.
	defer func() { j.Close() }()
	crash := func(then func(w *CheckpointWriter)) {
		t.Helper()
		w, err := j.NewCheckpoint(20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(ckptData(20, 3*pieceBytes+1)); err != nil {
			t.Fatal(err)
		}
		then(w)
		j.Close()
		if j, err = Open(dir, Options{NoSync: true, Logger: discardLogger()}); err != nil {
			t.Fatal(err)
		}
		latestIs(j, 10)
	}
	// Dead while writing: its pieces never reached the journal, and
	// their table, which the crash left beside it, is gone once the
	// journal is open again.
	crash(func(*CheckpointWriter) {
		if n := tables(); n != 1 {
			t.Fatalf("a checkpoint being written has %d tables, want 1", n)
		}
	})
	if held := piecesHeld(t, j); len(held) != 1 {
		t.Fatalf("the pieces held after the crash are %v, want only checkpoint 10's", held)
	}
	if n := tables(); n != 0 {
		t.Fatalf("the unfinished checkpoint's table is still there after the journal opened again (%d)", n)
	}
	// Dead after its pieces were ingested and before its head: pieces no
	// head names, which the next checkpoint, above them, deletes.
	crash(func(w *CheckpointWriter) {
		if w.ingest(); w.err != nil {
			t.Fatal(w.err)
		}
	})
	if held := piecesHeld(t, j); len(held) != 2 {
		t.Fatalf("the pieces held after the crash are %v, want checkpoint 10's and the unfinished one's", held)
	}
	if err := j.SaveCheckpoint(25, ckptData(25, 2*pieceBytes)); err != nil {
		t.Fatal(err)
	}
	latestIs(j, 25)
	checkNoOrphans(t, j)
}

// TestCheckpointWithAPieceMissingIsCorrupt: a checkpoint whose piece is
// lost or damaged is an error wrapping ErrCorrupt, to LatestCheckpoint
// and to Verify, never data with a hole in it.
func TestCheckpointWithAPieceMissingIsCorrupt(t *testing.T) {
	for _, damage := range []string{"lost", "flipped"} {
		t.Run(damage, func(t *testing.T) {
			j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
			appendEach(t, j, 0, 3)
			if err := j.SaveCheckpoint(3, ckptData(3, 3*pieceBytes)); err != nil {
				t.Fatal(err)
			}
			ms, _ := checkpointMetas(j.db)
			key := pieceKey(3, ms[0].Gen, 1)
			var err error
			if damage == "lost" {
				err = j.db.Delete(key, pebble.Sync)
			} else {
				v, closer, gerr := j.db.Get(key)
				if gerr != nil {
					t.Fatal(gerr)
				}
				bad := append([]byte(nil), v...)
				closer.Close()
				bad[100] ^= 1
				err = j.db.Set(key, bad, pebble.Sync)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := j.LatestCheckpoint(0); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("LatestCheckpoint with a piece %s: %v, want ErrCorrupt", damage, err)
			}
			c, _, _, err := j.CopyCheckpoint(0)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := copyAll(t, c, pieceBytes); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a copy of a checkpoint with a piece %s: %v, want ErrCorrupt", damage, err)
			}
			if _, err := j.Verify(testCtx(t)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Verify with a piece %s: %v, want ErrCorrupt", damage, err)
			}
		})
	}
}

// TestRetentionDeletesCheckpointPieces: thinning, Prune and Truncate
// delete the pieces of the checkpoints they delete, and only those.
func TestRetentionDeletesCheckpointPieces(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	j, dir := openTemp(t, Options{NoSync: true, Logger: discardLogger(), Now: func() time.Time { return now }})
	var seqs []uint64
	for h := 0; h < 48; h++ {
		now = t0.Add(time.Duration(h) * time.Hour)
		last := appendEach(t, j, h*2, 2)
		if h%4 == 3 {
			if err := j.SaveCheckpoint(last.Seq, ckptData(last.Seq, pieceBytes+h)); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, last.Seq)
		}
	}
	// Thinning: one checkpoint in each span of 24h/16, and the newest two.
	if err := j.Retain(testCtx(t), Retention{MaxAge: 24 * time.Hour}, seqs[len(seqs)-1]+1, now); err != nil {
		t.Fatal(err)
	}
	infos, err := j.Checkpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) >= len(seqs) || j.First() == 1 {
		t.Fatalf("retention kept %d of %d checkpoints and the log from %d: nothing to check", len(infos), len(seqs), j.First())
	}
	checkNoOrphans(t, j)
	if _, err := j.Verify(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// Prune to the newest but one.
	if err := j.Prune(testCtx(t), infos[len(infos)-2].Seq); err != nil {
		t.Fatal(err)
	}
	checkNoOrphans(t, j)
	if held := piecesHeld(t, j); len(held) != 2 {
		t.Fatalf("after pruning to the newest but one, the pieces of %d checkpoints are held, want 2", len(held))
	}
	// Truncate past the newest.
	newest := infos[len(infos)-1].Seq
	j.Close()
	if _, err := Truncate(dir, newest-1, Options{Logger: discardLogger()}); err != nil {
		t.Fatal(err)
	}
	j, err = Open(dir, Options{NoSync: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	checkNoOrphans(t, j)
	if held := piecesHeld(t, j); len(held) != 1 {
		t.Fatalf("after truncating below the newest checkpoint, the pieces of %d are held, want 1", len(held))
	}
}

// TestCheckpointInOneValueStillReads: a journal written before
// checkpoints were stored in pieces holds them whole under their keys.
// They are listed, read, verified, pruned to and deleted as before, beside
// checkpoints in pieces.
func TestCheckpointInOneValueStillReads(t *testing.T) {
	j, dir := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 30)
	old := map[string]int{"a": 1, "b": 2}
	oldData, _ := encMode.Marshal(old)
	for _, seq := range []uint64{5, 10} {
		if _, _, err := j.SaveCheckpointOneValue(seq, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.SaveCheckpoint(20, ckptData(20, 2*pieceBytes)); err != nil {
		t.Fatal(err)
	}
	all := readAll(t, j)
	for _, tc := range []struct {
		atMost, want uint64
		data         []byte
	}{{0, 20, ckptData(20, 2*pieceBytes)}, {19, 10, oldData}, {9, 5, oldData}} {
		c, ok, err := j.LatestCheckpoint(tc.atMost)
		if err != nil || !ok || c.Seq != tc.want || !bytes.Equal(c.Data, tc.data) || c.Hash != all[tc.want-1].Hash || !c.Time.Equal(all[tc.want-1].Time) {
			t.Fatalf("LatestCheckpoint(%d) = %d (%d bytes), %v, %v; want %d anchored to its record", tc.atMost, c.Seq, len(c.Data), ok, err, tc.want)
		}
		cp, info, ok, err := j.CopyCheckpoint(tc.atMost)
		if err != nil || !ok || info.Seq != tc.want || info.Hash != c.Hash {
			t.Fatalf("CopyCheckpoint(%d) = %+v, %v, %v", tc.atMost, info, ok, err)
		}
		if data, _, err := copyAll(t, cp, pieceBytes); err != nil || !bytes.Equal(data, tc.data) {
			t.Fatalf("a copy of checkpoint %d: %d bytes, %v", tc.want, len(data), err)
		}
	}
	var got map[string]int
	if c, _, _ := j.LatestCheckpoint(10); DecodeCheckpoint(c.Data, &got) != nil || got["b"] != 2 {
		t.Fatalf("the one-value checkpoint decodes to %v", got)
	}
	infos, err := j.Checkpoints()
	if err != nil || len(infos) != 3 || infos[0].Bytes != len(oldData) || infos[2].Bytes != 2*pieceBytes {
		t.Fatalf("Checkpoints() = %+v, %v", infos, err)
	}
	if _, err := j.Verify(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// Pruned to a one-value checkpoint, the log is anchored to it.
	if err := j.Prune(testCtx(t), 10); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, err = Open(dir, Options{NoSync: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n, err := j.Verify(testCtx(t)); err != nil || n != 20 || j.First() != 11 {
		t.Fatalf("after pruning to the one-value checkpoint Verify = %d, %v from %d; want 20 records from 11", n, err, j.First())
	}
	// The next checkpoint in pieces, and a prune past the old one.
	if err := j.SaveCheckpoint(30, ckptData(30, 10)); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(testCtx(t), 20); err != nil {
		t.Fatal(err)
	}
	if infos, _ := j.Checkpoints(); len(infos) != 2 || infos[0].Seq != 20 {
		t.Fatalf("after pruning past the one-value checkpoints: %+v", infos)
	}
	checkNoOrphans(t, j)
}
