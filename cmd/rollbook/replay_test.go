package main

import (
	"context"
	"path/filepath"
	"testing"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestReplayOnePassAsTwo: `rollbook replay` reads a recorded rollout once
// and compares exactly the plans and actions the two-pass replay does.
func TestReplayOnePassAsTwo(t *testing.T) {
	paths, err := filepath.Glob("../../test/replay/testdata/*.jsonl.gz")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range paths[:3] {
		src := recordSource{export: path}
		d, one, n, err := replay(context.Background(), src, "", replayMode{})
		if err != nil || d != nil {
			t.Fatalf("%s: one pass: %v %v", path, err, d)
		}
		d, two, n2, err := replayTwoPasses(context.Background(), src, "", replayMode{})
		if err != nil || d != nil {
			t.Fatalf("%s: two passes: %v %v", path, err, d)
		}
		if one.Plans == 0 || one.Plans != two.Plans || one.Actions != two.Actions || n != n2 {
			t.Fatalf("%s: one pass %d records, %s; two passes %d records, %s", path, n, one.Summary(), n2, two.Summary())
		}
	}
}

// TestReplayRolloutFromItsCheckpoint: `rollbook replay --rollout` reads a
// journal directory from the newest checkpoint before the rollout's first
// record and compares exactly what a replay from record 1 compares for
// it; a rollout the checkpoints do not hold is replayed from record 1.
func TestReplayRolloutFromItsCheckpoint(t *testing.T) {
	const fixture, rollout = "../../test/replay/testdata/TestResizeInPlace.jsonl.gz", "testresizeinplace-10/grow"
	const before, after = 40, 120 // the rollout's first record is 68
	dir := filepath.Join(t.TempDir(), "journal")
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	books := projections.NewBooks()
	var last uint64
	err = journal.ReadExportFile(fixture, func(r journal.Record) error {
		last = r.Seq
		if err := j.Import(context.Background(), r); err != nil {
			return err
		}
		if err := books.Apply(r); err != nil {
			return err
		}
		if r.Seq == before || r.Seq == after {
			return saveCheckpoint(j, r.Seq, books)
		}
		return nil
	})
	j.Close()
	if err != nil {
		t.Fatal(err)
	}
	d, whole, _, err := replay(context.Background(), recordSource{export: fixture}, rollout, replayMode{})
	if err != nil || d != nil || whole.Actions == 0 {
		t.Fatalf("from the export: %v %v (%d actions)", err, d, whole.Actions)
	}
	d, rp, n, err := replay(context.Background(), recordSource{dir: dir}, rollout, replayMode{})
	if err != nil || d != nil {
		t.Fatalf("from the directory: %v %v", err, d)
	}
	if rp.From != before || n != last-before || rp.Plans != whole.Plans || rp.Actions != whole.Actions {
		t.Fatalf("from the directory: after record %d, %d records read, %s; want after %d, %d records, %s", rp.From, n, rp.Summary(), before, last-before, whole.Summary())
	}
	_, rp, n, err = replay(context.Background(), recordSource{dir: dir}, "nowhere/none", replayMode{})
	if err != nil || rp.From != 0 || n != last {
		t.Fatalf("a rollout the checkpoints do not hold: %v, after record %d, %d records read", err, rp.From, n)
	}
}
