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
	books := projections.NewBooks()
	var mid uint64
	err = journal.ReadExportFile("../../test/replay/testdata/TestResizeInPlace.jsonl.gz", func(r journal.Record) error {
		if err := j.Import(ctx, r); err != nil {
			return err
		}
		if err := books.Apply(r); err != nil {
			return err
		}
		if r.Seq == 80 {
			mid = r.Seq
			if forge {
				books.State.Now++
			}
			err := saveCheckpoint(j, mid, books)
			if forge {
				books.State.Now--
			}
			return err
		}
		return nil
	})
	if err != nil || mid == 0 {
		t.Fatalf("journal of the recorded rollout: %v (checkpoint at %d)", err, mid)
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
