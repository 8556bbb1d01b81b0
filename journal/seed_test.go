package journal

import (
	"bytes"
	"errors"
	"testing"
)

// TestSeedContinuesAnotherCopy: a journal seeded with another copy's
// checkpoint is that copy pruned to it: it starts after the checkpoint,
// imports the records after it and only those, verifies, holds the
// checkpoint as its latest, and stays so across a reopen.
func TestSeedContinuesAnotherCopy(t *testing.T) {
	ctx := testCtx(t)
	src, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, src, 0, 40)
	data := bytes.Repeat([]byte("state "), 100_000) // several pieces
	if err := src.SaveCheckpoint(25, data); err != nil {
		t.Fatal(err)
	}
	c, ok, err := src.LatestCheckpoint(0)
	if err != nil || !ok {
		t.Fatalf("the source's checkpoint: %v %v", ok, err)
	}
	recs := readAll(t, src)

	j, dir := openTemp(t, Options{NoSync: true, Logger: discardLogger(), ID: src.ID()})
	if err := j.Seed(ctx, c); err != nil {
		t.Fatal(err)
	}
	if last, head := j.Last(); last != 25 || head != recs[24].Hash || j.First() != 26 {
		t.Fatalf("seeded: last %d, first %d, head is record 25's: %v", last, j.First(), head == recs[24].Hash)
	}
	if err := j.Import(ctx, recs[24]); err == nil {
		t.Fatal("record 25 imported again after the seed")
	}
	if err := j.Import(ctx, recs[26]); !errors.Is(err, ErrBrokenChain) {
		t.Fatalf("record 27 imported where 26 was due: %v", err)
	}
	if err := j.Import(ctx, recs[25:]...); err != nil {
		t.Fatal(err)
	}
	if err := j.Seed(ctx, c); err == nil {
		t.Fatal("a journal holding records was seeded again")
	}
	check := func(j *Journal) {
		t.Helper()
		n, err := j.Verify(ctx)
		if err != nil || n != 15 {
			t.Fatalf("verify: %d records, %v", n, err)
		}
		got, ok, err := j.LatestCheckpoint(0)
		if err != nil || !ok || got.Seq != 25 || got.Hash != c.Hash || !got.Time.Equal(c.Time) || !bytes.Equal(got.Data, data) {
			t.Fatalf("the seeded checkpoint: ok %v, err %v, seq %d, same data %v", ok, err, got.Seq, bytes.Equal(got.Data, data))
		}
		var seqs []uint64
		if err := j.Read(ctx, 1, func(r Record) error { seqs = append(seqs, r.Seq); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(seqs) != 15 || seqs[0] != 26 || seqs[14] != 40 {
			t.Fatalf("read from record 1: %v", seqs)
		}
	}
	check(j)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err = Open(dir, Options{NoSync: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	check(j)
	// It goes on as any journal does.
	if last := appendEach(t, j, 40, 1); last.Seq != 41 || last.Prev != recs[39].Hash {
		t.Fatalf("appended record %d after the import", last.Seq)
	}
}

// TestSeedRefusesAJournalWithRecords: seeding writes nothing into a
// journal that has records, or one already seeded.
func TestSeedRefusesAJournalWithRecords(t *testing.T) {
	ctx := testCtx(t)
	src, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, src, 0, 10)
	if err := src.SaveCheckpoint(5, []byte("five")); err != nil {
		t.Fatal(err)
	}
	c, _, err := src.LatestCheckpoint(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Seed(ctx, c); err == nil {
		t.Fatal("a journal of 10 records was seeded")
	}
	if n, err := src.Verify(ctx); err != nil || n != 10 || src.First() != 1 {
		t.Fatalf("after the refused seed: %d records, first %d, %v", n, src.First(), err)
	}
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	if err := j.Seed(ctx, c); err != nil {
		t.Fatal(err)
	}
	c2 := c
	c2.Seq, c2.Data = 3, []byte("three")
	if err := j.Seed(ctx, c2); err == nil {
		t.Fatal("a seeded journal was seeded again")
	}
	if got, _, err := j.LatestCheckpoint(0); err != nil || got.Seq != 5 || j.First() != 6 {
		t.Fatalf("after the second seed: checkpoint at %d, first %d, %v", got.Seq, j.First(), err)
	}
}
