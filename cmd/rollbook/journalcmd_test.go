package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestJournalVerifyAuditsCheckpoints: `journal verify` fails on a
// checkpoint that is whole and anchored but holds another state than its
// records, says how to repair it, and passes once
// --rewrite-checkpoints has written it again from the records;
// --chain-only checks what it did before.
func TestJournalVerifyAuditsCheckpoints(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "journal")
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	books := projections.NewBooks()
	err = journal.ReadExportFile("../../test/replay/testdata/TestResizeInPlace.jsonl.gz", func(r journal.Record) error {
		if err := j.Import(ctx, r); err != nil {
			return err
		}
		return books.Apply(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A forged checkpoint at the last record: one pod's resourceVersion
	// moved on, as if a watch event had been folded that the journal
	// does not hold.
	var victim string
	for k := range books.State.Pods {
		victim = max(victim, k)
	}
	p := books.State.Pods[victim]
	p.ResourceVersion = journal.MakeVersion(p.ResourceVersion.String() + "0")
	if err := saveCheckpoint(j, books.State.Seq, books); err != nil {
		t.Fatal(err)
	}
	j.Close()

	verify := func(args ...string) error {
		return journalCmd(ctx, append([]string{"verify", "--dir", dir}, args...))
	}
	err = verify()
	if err == nil || !strings.Contains(err.Error(), "State.Pods["+victim+"].ResourceVersion differs") ||
		!strings.Contains(err.Error(), "--rewrite-checkpoints") {
		t.Fatalf("verify of a forged checkpoint: %v", err)
	}
	if err := verify("--chain-only"); err != nil {
		t.Fatalf("verify --chain-only: %v", err)
	}
	if err := verify("--rewrite-checkpoints"); err != nil {
		t.Fatalf("verify --rewrite-checkpoints: %v", err)
	}
	if err := verify(); err != nil {
		t.Fatalf("verify after the rewrite: %v", err)
	}
}
