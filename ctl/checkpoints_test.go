package ctl

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// fixture is a rollout recorded on the test cluster, exported.
const fixture = "../test/replay/testdata/TestLifecycleHooksHoldAndRelease.jsonl.gz"

// recordedJournal is a real Pebble journal holding a rollout recorded on
// the test cluster (test/replay's fixture), with the fold's checkpoints
// at three of its records, written as the controller writes them. It
// returns the journal and the checkpoints' records.
func recordedJournal(t *testing.T) (*journal.Journal, []uint64) {
	t.Helper()
	return recordedJournalIn(t, t.TempDir(), 0)
}

// recordedJournalIn is recordedJournal in dir, with its checkpoints only
// up to record upTo (0: all three).
func recordedJournalIn(t *testing.T, dir string, upTo uint64) (*journal.Journal, []uint64) {
	t.Helper()
	ctx := context.Background()
	var recs []journal.Record
	if err := journal.ReadExportFile(fixture, func(r journal.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	if err := j.Import(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	at := []uint64{uint64(len(recs) / 4), uint64(len(recs) / 2), uint64(len(recs) - 1)}
	for upTo > 0 && at[len(at)-1] > upTo {
		at = at[:len(at)-1]
	}
	books := projections.NewBooks()
	for _, r := range recs[:at[len(at)-1]] {
		if err := books.Apply(r); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(at, r.Seq) {
			saveFold(t, j, books)
		}
	}
	return j, at
}

// checkpointAt is the state the checkpoint at seq holds.
func checkpointAt(t *testing.T, j *journal.Journal, seq uint64) *projections.Books {
	t.Helper()
	c, ok, err := j.LatestCheckpoint(seq)
	if err != nil || !ok || c.Seq != seq {
		t.Fatalf("checkpoint at %d: %v (found %v at %d)", seq, err, ok, c.Seq)
	}
	books := projections.NewBooks()
	if err := journal.DecodeCheckpoint(c.Data, books); err != nil {
		t.Fatal(err)
	}
	return books
}

func saveFold(t *testing.T, j *journal.Journal, books *projections.Books) {
	t.Helper()
	w, err := j.NewCheckpoint(books.State.Seq)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.Encode(books); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestAuditCheckpoints: checkpoints that hold the fold of their records
// pass, from record 1 and from where a pruned journal starts; one that
// holds another state, its checksums and anchor right, is named with what
// differs, and rewriting it from the records makes the audit pass.
func TestAuditCheckpoints(t *testing.T) {
	ctx := context.Background()
	j, at := recordedJournal(t)
	a, err := AuditCheckpoints(ctx, j, AuditOptions{})
	if err != nil || a.From != 0 || !slices.Equal(a.Checked, at) {
		t.Fatalf("honest checkpoints: %+v, %v; want %v checked from record 1", a, err, at)
	}

	// The middle checkpoint rewritten with one pod's name changed:
	// whole, anchored, and wrong.
	books := checkpointAt(t, j, at[1])
	var victim string
	for k := range books.State.Pods {
		victim = max(victim, k)
	}
	p := books.State.Pods[victim]
	p.Name += "-forged"
	saveFold(t, j, books)
	if _, err := j.Verify(ctx); err != nil {
		t.Fatalf("the forged checkpoint should pass the chain's checks (that is the gap): %v", err)
	}

	a, err = AuditCheckpoints(ctx, j, AuditOptions{})
	ce, ok := errors.AsType[*CheckpointError](err)
	if !ok || ce.Seq != at[1] || !slices.Equal(a.Checked, at[:1]) {
		t.Fatalf("forged checkpoint at %d: %+v, %v", at[1], a, err)
	}
	if want := "State.Pods[" + victim + "].Name differs"; !slices.Contains(ce.Diffs, want) {
		t.Fatalf("the error names %q, want %q", ce.Diffs, want)
	}
	if !strings.Contains(err.Error(), "does not hold the fold of records 1..") {
		t.Fatalf("error %q does not say which records", err)
	}

	a, err = AuditCheckpoints(ctx, j, AuditOptions{Rewrite: true})
	if err != nil || !slices.Equal(a.Rewritten, at[1:2]) || !slices.Equal(a.Checked, []uint64{at[0], at[2]}) {
		t.Fatalf("rewrite: %+v, %v", a, err)
	}
	if a, err = AuditCheckpoints(ctx, j, AuditOptions{}); err != nil || !slices.Equal(a.Checked, at) {
		t.Fatalf("after the rewrite: %+v, %v", a, err)
	}

	// Pruned to the first checkpoint: the fold starts from it.
	if err := j.Prune(ctx, at[0]); err != nil {
		t.Fatal(err)
	}
	if a, err = AuditCheckpoints(ctx, j, AuditOptions{}); err != nil || a.From != at[0] || !slices.Equal(a.Checked, at[1:]) {
		t.Fatalf("pruned to %d: %+v, %v", at[0], a, err)
	}
	// With the pruned records read from elsewhere (the export the journal
	// was imported from), the checkpoint it starts at is checked too.
	earlier := AuditOptions{Earlier: &Source{Export: fixture}}
	if a, err = AuditCheckpoints(ctx, j, earlier); err != nil || a.From != 0 || a.Earlier == "" || !slices.Equal(a.Checked, at) {
		t.Fatalf("pruned to %d, the records before it from the export: %+v, %v", at[0], a, err)
	}
}

// TestAuditChecksAPrunedJournalsStart: a pruned journal's first
// checkpoint, forged before the records under it were pruned, is found
// once the audit reads those records from another copy, and is not
// rewritten: nothing here holds what it should be folded from.
func TestAuditChecksAPrunedJournalsStart(t *testing.T) {
	ctx := context.Background()
	j, at := recordedJournal(t)
	books := checkpointAt(t, j, at[0])
	books.State.Now++ // the planner's clock, a nanosecond on
	saveFold(t, j, books)
	if err := j.Prune(ctx, at[0]); err != nil {
		t.Fatal(err)
	}
	a, err := AuditCheckpoints(ctx, j, AuditOptions{Rewrite: true, Earlier: &Source{Export: fixture}})
	ce, ok := errors.AsType[*CheckpointError](err)
	if !ok || ce.Seq != at[0] || !slices.Equal(ce.Diffs, []string{"State.Now differs"}) || len(a.Rewritten) != 0 {
		t.Fatalf("forged first checkpoint at %d: %+v, %v", at[0], a, err)
	}
	// Another journal's records are not taken for this one's past.
	other := &Source{Export: "../test/replay/testdata/TestResizeInPlace.jsonl.gz"}
	if _, err := AuditCheckpoints(ctx, j, AuditOptions{Earlier: other}); err == nil || !strings.Contains(err.Error(), "is it this journal's?") {
		t.Fatalf("the records before it from another journal: %v", err)
	}
}

// TestAuditVerifiesTheChainInTheSameRead: with Chain, one read verifies
// the whole journal and audits its checkpoints: an honest journal passes
// both; a forged checkpoint is reported with the chain verified to the
// end; a broken chain is reported before the forged checkpoint, as when
// Verify ran first; a journal with no checkpoint is verified all the same.
func TestAuditVerifiesTheChainInTheSameRead(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j, at := recordedJournalIn(t, dir, 0)
	last, _ := j.Last()
	a, err := AuditCheckpoints(ctx, j, AuditOptions{Chain: true})
	if err != nil || !a.Verified || a.Records != last || !slices.Equal(a.Checked, at) {
		t.Fatalf("honest journal: %+v, %v; want %d records verified and %v checked", a, err, last, at)
	}
	if _, err := AuditCheckpoints(ctx, j, AuditOptions{Chain: true, Rewrite: true}); err == nil {
		t.Fatal("Chain and Rewrite were taken together")
	}

	books := checkpointAt(t, j, at[1])
	books.State.Now++
	saveFold(t, j, books)
	a, err = AuditCheckpoints(ctx, j, AuditOptions{Chain: true})
	if ce, ok := errors.AsType[*CheckpointError](err); !ok || ce.Seq != at[1] || !a.Verified || a.Records != last {
		t.Fatalf("forged checkpoint at %d: %+v, %v; want it named, %d records verified", at[1], a, err, last)
	}

	// A record after the forged checkpoint deleted from the store.
	j.Close()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gone := at[1] + 5
	key := binary.BigEndian.AppendUint64([]byte{'L'}, gone) // journal/keys.go: a record's key
	if err := db.Delete(key, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if j, err = journal.Open(dir, journal.Options{}); err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	a, err = AuditCheckpoints(ctx, j, AuditOptions{Chain: true})
	if ce, ok := errors.AsType[*ChainError](err); !ok || ce.Records != gone-1 || a.Verified || !errors.Is(err, journal.ErrBrokenChain) {
		t.Fatalf("record %d gone: %+v, %v; want the chain broken after %d records", gone, a, err, gone-1)
	}

	// No checkpoint: the chain alone.
	empty := testJournal(t, 100)
	if a, err := AuditCheckpoints(ctx, empty, AuditOptions{Chain: true}); err != nil || !a.Verified || a.Records != 100 {
		t.Fatalf("a journal with no checkpoint: %+v, %v", a, err)
	}
}
