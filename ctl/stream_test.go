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

// publish starts a NATS server with its store in dir, listening on
// loopback, and an outbox publishing j to it until the test ends; stream
// looks the stream up (once the outbox made it), to purge it as its limits
// would.
func publish(t *testing.T, ctx context.Context, dir string, j *journal.Journal) (journal.NATSConfig, func() jetstream.Stream, *journal.Outbox) {
	t.Helper()
	srv, err := journal.StartEmbeddedNATS(dir, journal.NATSListen("127.0.0.1", -1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	cfg := journal.NATSConfig{URL: srv.ClientURL()}
	nc, err := journal.ConnectNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ob, err := journal.NewOutbox(j, nc, journal.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	octx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go ob.Run(octx)
	stream := func() jetstream.Stream {
		t.Helper()
		_, st, closeConn, err := OpenJetStream(ctx, cfg, journal.DefaultStreamName)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeConn)
		return st
	}
	return cfg, stream, ob
}

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

	cfg, stream, ob := publish(t, ctx, dir+"/nats", j)
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
	st := stream()
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(newest+1)); err != nil {
		t.Fatal(err)
	}
	fold("replay of the stream past its limits", history, newest+1)
	fold("status of the stream past its limits", latest, newest+1)

	// And one record more: no checkpoint is left to start from.
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(newest+2)); err != nil {
		t.Fatal(err)
	}
	err := src.ReadFrom(ctx, nil, func(journal.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), journal.CheckpointBucket(journal.DefaultStreamName)) || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("reading a stream that continues no checkpoint: %v", err)
	}
}

// TestAuditAgainstAStreamPastItsLimits: `journal verify --nats-url`
// checks a pruned journal's first checkpoint against the stream; once the
// stream's limits removed its start, against the fold from the oldest
// checkpoint beside it, and a stream that holds nothing before the
// journal's first checkpoint says so instead of checking nothing.
func TestAuditAgainstAStreamPastItsLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var recs []journal.Record
	if err := journal.ReadExportFile(fixture, func(r journal.Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	n := uint64(len(recs))
	j, err := journal.Open(dir+"/journal", journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	cfg, stream, ob := publish(t, ctx, dir+"/nats", j)
	// Records before n/2 with a checkpoint at n/4, shipped; then the rest
	// with one at n/2, shipped too.
	books := projections.NewBooks()
	for _, part := range [][2]uint64{{0, n/2 - 1}, {n/2 - 1, n}} {
		if err := j.Import(ctx, recs[part[0]:part[1]]...); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[part[0]:part[1]] {
			if err := books.Apply(r); err != nil {
				t.Fatal(err)
			}
			if r.Seq == n/4 || r.Seq == n/2 {
				saveFold(t, j, books)
			}
		}
		if err := ob.WaitPublished(ctx, part[1]); err != nil {
			t.Fatal(err)
		}
		if _, err := ob.ShipCheckpoint(ctx, 0, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// The journal is pruned to n/2; the stream's limits remove its
	// records up to n/4.
	if err := j.Prune(ctx, n/2); err != nil {
		t.Fatal(err)
	}
	st := stream()
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(n/4+1)); err != nil {
		t.Fatal(err)
	}
	earlier := &Source{NATS: cfg, Stream: journal.DefaultStreamName}
	a, err := AuditCheckpoints(ctx, j, AuditOptions{Earlier: earlier})
	if err != nil {
		t.Fatal(err)
	}
	if a.EarlierFrom != n/4 || len(a.Checked) == 0 || a.Checked[0] != n/2 {
		t.Fatalf("audited %v from the stream's checkpoint at %d; want the journal's first, %d, from the stream's at %d", a.Checked, a.EarlierFrom, n/2, n/4)
	}
	// Now the stream starts where the journal does.
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(n/2+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := ob.ShipCheckpoint(ctx, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err = AuditCheckpoints(ctx, j, AuditOptions{Earlier: earlier})
	if err == nil || !strings.Contains(err.Error(), "no records to check") {
		t.Fatalf("audit against a stream that starts where the journal does: %v", err)
	}
}
