package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	last := uint64(152) // the fixture's last record
	books := importFixture(t, j, last)
	// A forged checkpoint at the last record: one pod's resourceVersion
	// moved on, as if a watch event had been folded that the journal
	// does not hold.
	var victim string
	for k := range books.State.Pods {
		victim = max(victim, k)
	}
	p := books.State.Pods[victim]
	p.ResourceVersion = journal.MakeVersion(p.ResourceVersion.String() + "0")
	if err := saveCheckpoint(j, last, books); err != nil {
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

// importFixture imports a rollout recorded on the test cluster into j
// and returns the fold of its records up to at.
func importFixture(t *testing.T, j *journal.Journal, at uint64) *projections.Books {
	t.Helper()
	books := projections.NewBooks()
	err := journal.ReadExportFile("../../test/replay/testdata/TestResizeInPlace.jsonl.gz", func(r journal.Record) error {
		if err := j.Import(context.Background(), r); err != nil {
			return err
		}
		if r.Seq > at {
			return nil
		}
		return books.Apply(r)
	})
	if err != nil || books.State.Seq != at {
		t.Fatalf("the recorded rollout, folded to record %d: %v (folded to %d)", at, err, books.State.Seq)
	}
	return books
}

// prunedJournal is a journal of a recorded rollout, published whole to
// the NATS stream name and then pruned to a checkpoint halfway, which
// holds the fold of the records before it, or with forge that fold's
// clock a nanosecond on. It returns the journal's directory.
func prunedJournal(t *testing.T, natsURL, name string, forge bool) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := filepath.Join(t.TempDir(), "journal")
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	const mid = 80
	books := importFixture(t, j, mid)
	if forge {
		books.State.Now++
	}
	if err := saveCheckpoint(j, mid, books); err != nil {
		t.Fatal(err)
	}
	nc, err := journal.ConnectNATS(journal.NATSConfig{URL: natsURL})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ob, err := journal.NewOutbox(j, nc, journal.OutboxOptions{Stream: jetstream.StreamConfig{Name: name}, SubjectPrefix: "rollbook-" + strings.ToLower(name)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	last, _ := j.Last()
	wait, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	if err := ob.WaitPublished(wait, last); err != nil {
		t.Fatalf("the stream did not receive the journal's %d records within a minute: %v", last, err)
	}
	cancel()
	<-done
	if err := j.Prune(context.Background(), mid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestJournalVerifyChecksAPrunedStartAgainstTheStream: a pruned journal's
// first checkpoint is taken on trust by `journal verify` alone; with
// --nats-url it is checked against the stream's records before it, and
// one forged before the pruning is found, with the way out.
func TestJournalVerifyChecksAPrunedStartAgainstTheStream(t *testing.T) {
	ctx := context.Background()
	nats := startTestNATS(t, t.TempDir())
	honest := prunedJournal(t, nats.URL, "HONEST", false)
	forged := prunedJournal(t, nats.URL, "FORGED", true)
	verify := func(dir string, args ...string) error {
		return journalCmd(ctx, append([]string{"verify", "--dir", dir}, args...))
	}
	for _, dir := range []string{honest, forged} {
		if err := verify(dir); err != nil {
			t.Fatalf("verify of a pruned journal, its start taken on trust: %v", err)
		}
	}
	if err := verify(honest, "--nats-url", nats.URL, "--stream", "HONEST"); err != nil {
		t.Fatalf("verify of the honest pruned journal against its stream: %v", err)
	}
	err := verify(forged, "--nats-url", nats.URL, "--stream", "FORGED")
	if err == nil || !strings.Contains(err.Error(), "the checkpoint at record 80 does not hold the fold of records 1..80: State.Now differs") ||
		!strings.Contains(err.Error(), "journal restore") {
		t.Fatalf("verify of the forged pruned journal against its stream: %v", err)
	}
}
