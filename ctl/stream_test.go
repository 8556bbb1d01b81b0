package ctl

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestStreamReadersStartAtTheCheckpointBesideIt: a reader of the present
// (status) starts a stream at the newest checkpoint shipped beside it; a
// reader of history (replay) reads a stream that holds record 1 from
// there, and one whose limits removed its start from the oldest
// checkpoint it continues; each gets the state the whole journal folds
// to. A stream that has lost the record after every checkpoint says so,
// and where to look.
func TestStreamReadersStartAtTheCheckpointBesideIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var n uint64
	if err := journal.ReadExportFile(fixture, func(journal.Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	// Checkpoints up to the middle: records after the newest to lose.
	j, at := recordedJournalIn(t, dir+"/journal", n/2)
	last, _ := j.Last()
	whole := projections.New()
	if err := j.Read(ctx, 1, func(r journal.Record) error { return whole.Apply(r) }); err != nil {
		t.Fatal(err)
	}
	want := stateBytes(t, whole)

	srv, err := journal.StartEmbeddedNATS(dir+"/nats", journal.NATSListen("127.0.0.1", -1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	cfg := journal.NATSConfig{URL: srv.ClientURL()}
	nc, err := journal.ConnectNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ob, err := journal.NewOutbox(j, nc, journal.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	go ob.Run(octx)
	if err := ob.WaitPublished(ctx, last); err != nil {
		t.Fatal(err)
	}
	newest := at[len(at)-1]
	if got, err := ob.ShipCheckpoint(ctx, 0, time.Hour); err != nil || got != newest {
		t.Fatalf("shipped the checkpoint at %d (%v), want %d", got, err, newest)
	}
	src := Source{NATS: cfg, Stream: journal.DefaultStreamName}

	fold := func(name string, read func(base func(*projections.Books) error, fn func(journal.Record) error) error, from uint64) {
		t.Helper()
		s := projections.New()
		var seqs []uint64
		err := read(func(b *projections.Books) error { s = b.State; return nil }, func(r journal.Record) error {
			seqs = append(seqs, r.Seq)
			return s.Apply(r)
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(seqs) == 0 || seqs[0] != from || seqs[len(seqs)-1] != last {
			t.Fatalf("%s: read %d records from %v, want records %d..%d", name, len(seqs), seqs[:min(len(seqs), 1)], from, last)
		}
		if !bytes.Equal(stateBytes(t, s), want) {
			t.Fatalf("%s: the state from record %d is not the fold of the whole journal", name, from)
		}
	}
	latest := func(base func(*projections.Books) error, fn func(journal.Record) error) error {
		return src.ReadLatest(ctx, base, fn)
	}
	history := func(base func(*projections.Books) error, fn func(journal.Record) error) error {
		return src.ReadFrom(ctx, base, fn)
	}
	fold("status of the whole stream", latest, newest+1)
	fold("replay of the whole stream", history, 1)

	// The stream's limits remove every record up to the checkpoint.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, journal.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(newest+1)); err != nil {
		t.Fatal(err)
	}
	fold("replay of the stream past its limits", history, newest+1)
	fold("status of the stream past its limits", latest, newest+1)

	// And one record more: no checkpoint is left to start from.
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(newest+2)); err != nil {
		t.Fatal(err)
	}
	err = src.ReadFrom(ctx, nil, func(journal.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), journal.CheckpointBucket(journal.DefaultStreamName)) || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("reading a stream that continues no checkpoint: %v", err)
	}
}
