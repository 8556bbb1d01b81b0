package journal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// appendEach appends n small records, one Append each, and returns the last.
func appendEach(t testing.TB, j *Journal, from, n int) Record {
	t.Helper()
	var last Record
	for i := from; i < from+n; i++ {
		recs, err := j.Append(testCtx(t), nil, entry(t, i))
		if err != nil {
			t.Fatal(err)
		}
		last = recs[0]
	}
	return last
}

func TestCheckpointSaveAndLatest(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	if _, ok, err := j.LatestCheckpoint(0); err != nil || ok {
		t.Fatalf("a new journal has a checkpoint: %v %v", ok, err)
	}
	appendEach(t, j, 0, 10)
	if err := j.SaveCheckpoint(11, []byte("x")); err == nil {
		t.Fatal("a checkpoint past the last record was accepted")
	}
	for _, seq := range []uint64{3, 7} {
		if err := j.SaveCheckpoint(seq, []byte{byte(seq)}); err != nil {
			t.Fatal(err)
		}
	}
	recs := readAll(t, j)
	for _, tc := range []struct{ atMost, want uint64 }{{0, 7}, {10, 7}, {6, 3}, {3, 3}} {
		c, ok, err := j.LatestCheckpoint(tc.atMost)
		if err != nil || !ok {
			t.Fatalf("LatestCheckpoint(%d): %v %v", tc.atMost, ok, err)
		}
		if c.Seq != tc.want || !bytes.Equal(c.Data, []byte{byte(tc.want)}) || c.Hash != recs[tc.want-1].Hash || !c.Time.Equal(recs[tc.want-1].Time) {
			t.Fatalf("LatestCheckpoint(%d) = seq %d data %v, want seq %d anchored to its record", tc.atMost, c.Seq, c.Data, tc.want)
		}
	}
	if _, ok, _ := j.LatestCheckpoint(2); ok {
		t.Fatal("LatestCheckpoint(2) found one below the first checkpoint")
	}
	infos, err := j.Checkpoints()
	if err != nil || len(infos) != 2 || infos[0].Seq != 3 || infos[1].Seq != 7 || infos[1].Bytes != 1 {
		t.Fatalf("Checkpoints() = %+v, %v", infos, err)
	}
}

func TestPruneKeepsTheChainAnchored(t *testing.T) {
	j, dir := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 100)
	for _, seq := range []uint64{20, 60} {
		if err := j.SaveCheckpoint(seq, []byte("state")); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Prune(testCtx(t), 30); err == nil {
		t.Fatal("Prune to a record with no checkpoint was accepted")
	}
	if err := j.Prune(testCtx(t), 60); err != nil {
		t.Fatal(err)
	}
	check := func(j *Journal, wantLast uint64) {
		t.Helper()
		if j.First() != 61 {
			t.Fatalf("First() = %d, want 61", j.First())
		}
		recs := readAll(t, j) // asks for record 1: starts at First
		if len(recs) == 0 || recs[0].Seq != 61 || recs[len(recs)-1].Seq != wantLast {
			t.Fatalf("read %d records from %d, want 61..%d", len(recs), recs[0].Seq, wantLast)
		}
		if n, err := j.Verify(testCtx(t)); err != nil || n != wantLast-60 {
			t.Fatalf("Verify = %d, %v; want %d records", n, err, wantLast-60)
		}
		infos, err := j.Checkpoints()
		if err != nil || len(infos) != 1 || infos[0].Seq != 60 {
			t.Fatalf("after prune the checkpoints are %+v, %v; want only 60", infos, err)
		}
	}
	check(j, 100)
	// Reopened, it still starts at 61, and new records continue the chain.
	j.Close()
	j, err := Open(dir, Options{NoSync: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	check(j, 100)
	appendEach(t, j, 100, 5)
	check(j, 105)
}

func TestPruneToTheLastRecordContinues(t *testing.T) {
	j, dir := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	last := appendEach(t, j, 0, 10)
	if err := j.SaveCheckpoint(10, []byte("all")); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(testCtx(t), 10); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, err := Open(dir, Options{NoSync: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if seq, hash := j.Last(); seq != 10 || hash != last.Hash {
		t.Fatalf("an emptied journal reopens at %d, want 10 with record 10's hash", seq)
	}
	next := appendEach(t, j, 10, 1)
	if next.Seq != 11 || next.Prev != last.Hash {
		t.Fatalf("the record after a prune to the end is %d linking to %x, want 11 linking to %x", next.Seq, next.Prev[:6], last.Hash[:6])
	}
	if n, err := j.Verify(testCtx(t)); err != nil || n != 1 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

func TestPruneReclaimsSpace(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	for i := 0; i < 20; i++ {
		es := make([]Entry, 500)
		for k := range es {
			es[k] = entry(t, i*500+k)
		}
		if _, err := j.Append(testCtx(t), nil, es...); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.db.Flush(); err != nil {
		t.Fatal(err)
	}
	before, err := j.LogBytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := j.SaveCheckpoint(9000, []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(testCtx(t), 9000); err != nil {
		t.Fatal(err)
	}
	after, err := j.LogBytes()
	if err != nil {
		t.Fatal(err)
	}
	// 1,000 of 10,000 records kept: the log must shrink to well under half.
	if after*2 > before {
		t.Fatalf("the log took %d bytes before pruning 90%% of it and %d after", before, after)
	}
}

func TestVerifyCatchesAForeignCheckpoint(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 5)
	if err := j.SaveCheckpoint(3, []byte("s")); err != nil {
		t.Fatal(err)
	}
	// Forge a checkpoint that claims record 4 with record 3's hash.
	c, _, _ := j.LatestCheckpoint(3)
	v, _ := encMode.Marshal(checkpointValue{Seq: 4, Hash: c.Hash[:], Time: c.Time.UnixNano(), Data: c.Data})
	if err := j.db.Set(checkpointKey(4), frame(v), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, err := j.Verify(testCtx(t))
	var le *LinkError
	if !errors.As(err, &le) || le.Seq != 4 || !errors.Is(err, ErrBrokenChain) {
		t.Fatalf("Verify = %v, want a broken chain at record 4", err)
	}
}

func TestCheckpointDataDecodesLargeMaps(t *testing.T) {
	// A fleet's state: more entries than one record body may hold.
	m := map[string]int{}
	for i := 0; i < maxPairs+10; i++ {
		m[string(rune('a'+i%26))+string(rune(i))] = i
	}
	b, err := EncodeCheckpoint(m)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if err := DecodeCheckpoint(b, &got); err != nil || len(got) != len(m) {
		t.Fatalf("decoded %d of %d entries: %v", len(got), len(m), err)
	}
	if err := DecodeCheckpoint(b[:len(b)-1], &got); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a truncated checkpoint decoded: %v", err)
	}
}

// TestCheckpointsListsSizesWithoutData: Checkpoints reads each
// checkpoint's length from its header (every CBOR length form), not by
// decoding its data, and says the same time as LatestCheckpoint.
func TestCheckpointsListsSizesWithoutData(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j, 0, 4)
	sizes := []int{5, 30, 300, 70000}
	for i, n := range sizes {
		if err := j.SaveCheckpoint(uint64(i+1), bytes.Repeat([]byte{'x'}, n)); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := j.Checkpoints()
	if err != nil || len(infos) != len(sizes) {
		t.Fatalf("Checkpoints() = %+v, %v", infos, err)
	}
	for i, ci := range infos {
		c, ok, err := j.LatestCheckpoint(ci.Seq)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if ci.Bytes != sizes[i] || ci.Bytes != len(c.Data) || !ci.Time.Equal(c.Time) || ci.Seq != c.Seq {
			t.Fatalf("checkpoint %d listed as %+v; stored %d bytes at %s", c.Seq, ci, len(c.Data), c.Time)
		}
	}
}

// TestDecodeCheckpointPart: a reader that names one field of a checkpoint
// gets it as the whole decode does, the others passed over; a checkpoint
// that is not well formed is refused all the same.
func TestDecodeCheckpointPart(t *testing.T) {
	type whole struct {
		State    map[string][]string
		Rollouts map[string]uint64
	}
	in := whole{State: map[string][]string{}, Rollouts: map[string]uint64{"shop/web": 42, "shop/api": 7}}
	for i := range 1000 {
		in.State[string(rune('a'+i%26))+string(rune(i))] = []string{"image", "digest"}
	}
	data, err := EncodeCheckpoint(in)
	if err != nil {
		t.Fatal(err)
	}
	var part struct{ Rollouts map[string]uint64 }
	if err := DecodeCheckpointPart(data, &part); err != nil {
		t.Fatal(err)
	}
	if len(part.Rollouts) != 2 || part.Rollouts["shop/web"] != 42 || part.Rollouts["shop/api"] != 7 {
		t.Fatalf("Rollouts decoded as %v", part.Rollouts)
	}
	// The strict decode refuses what the part names not: the two differ.
	if err := DecodeCheckpoint(data, &part); err == nil {
		t.Fatal("DecodeCheckpoint took a checkpoint with a field its target has not")
	}
	if err := DecodeCheckpointPart(data[:len(data)-3], &part); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a cut checkpoint decoded part: %v", err)
	}
}
