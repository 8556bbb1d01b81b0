package main

import (
	"context"
	"os"
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

// TestReplayTheExportOfAPrunedJournal: the export of a pruned journal
// starts with the checkpoint its records follow, and replays as the
// journal does, from that checkpoint; an export from a record with no
// checkpoint before it carries none, and readers of records alone pass
// the checkpoint over.
func TestReplayTheExportOfAPrunedJournal(t *testing.T) {
	const fixture = "../../test/replay/testdata/TestResizeInPlace.jsonl.gz"
	const at = 40
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "journal")
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	books := projections.NewBooks()
	var last uint64
	if err := journal.ReadExportFile(fixture, func(r journal.Record) error {
		last = r.Seq
		if err := j.Import(ctx, r); err != nil {
			return err
		}
		if err := books.Apply(r); err != nil {
			return err
		}
		if r.Seq == at {
			return saveCheckpoint(j, r.Seq, books)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	export := func(name string, from uint64) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), name+".jsonl")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := exportJournal(ctx, j, f, from); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// A checkpoint line comes with an export that starts right after one.
	checkpointOf := func(path string) uint64 {
		t.Helper()
		var seq, records uint64
		if err := journal.ReadExport(path, func(c journal.Checkpoint) error { seq = c.Seq; return nil }, func(journal.Record) error { records++; return nil }); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	if c := checkpointOf(export("from-41", at+1)); c != at {
		t.Fatalf("the export from record %d carries the checkpoint at %d", at+1, c)
	}
	if c := checkpointOf(export("from-5", 5)); c != 0 {
		t.Fatalf("the export from record 5 carries a checkpoint at %d", c)
	}

	if err := j.Prune(ctx, at); err != nil {
		t.Fatal(err)
	}
	path := export("pruned", 1)
	j.Close() // as a stopped controller's
	d, fromDir, nDir, err := replay(ctx, recordSource{dir: dir}, "", replayMode{})
	if err != nil || d != nil {
		t.Fatalf("the pruned journal: %v %v", err, d)
	}
	d, rp, n, err := replay(ctx, recordSource{export: path}, "", replayMode{})
	if err != nil || d != nil {
		t.Fatalf("its export: %v %v", err, d)
	}
	if rp.From != at || n != last-at || n != nDir || rp.Summary() != fromDir.Summary() || rp.Actions == 0 {
		t.Fatalf("its export: after record %d, %d records, %s; the journal: after %d, %d records, %s", rp.From, n, rp.Summary(), fromDir.From, nDir, fromDir.Summary())
	}
	var records uint64
	if err := journal.ReadExportFile(path, func(journal.Record) error { records++; return nil }); err != nil || records != last-at {
		t.Fatalf("records alone: %d of %d, %v", records, last-at, err)
	}
}
