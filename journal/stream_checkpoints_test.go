package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestShipCheckpointsBesideTheStream: the outbox copies a checkpoint to
// the stream's bucket only once the stream holds its record, as it is;
// when the stream's limits remove its start, the checkpoints before it
// go, and a journal seeded from the oldest one left, with the stream's
// records after it imported, is the source journal from there on.
func TestShipCheckpointsBesideTheStream(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	srv := startNATS(t, dir+"/nats")
	nc := connect(t, NATSConfig{Embedded: srv})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	ob, err := NewOutbox(j, nc, OutboxOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	published := func(seq uint64) {
		t.Helper()
		eventually(t, 30*time.Second, fmt.Sprintf("record %d published", seq), func() bool { return ob.Published() >= seq })
	}
	ship := func(after, want uint64) {
		t.Helper()
		got, err := ob.ShipCheckpoint(ctx, after, time.Hour)
		if err != nil || got != want {
			t.Fatalf("ShipCheckpoint after %d: shipped %d, %v; want %d", after, got, err, want)
		}
	}
	list := func() []uint64 {
		t.Helper()
		cps, err := ListStreamCheckpoints(ctx, js, DefaultStreamName, j.ID())
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, c := range cps {
			seqs = append(seqs, c.Seq)
		}
		return seqs
	}
	data := func(seq uint64) []byte { return bytes.Repeat([]byte(fmt.Sprintf("state at %d;", seq)), 60_000) }

	stop := runOutbox(t, ob)
	appendN(t, j, 0, 100)
	published(100)
	if err := j.SaveCheckpoint(30, data(30)); err != nil {
		t.Fatal(err)
	}
	ship(0, 30)
	ship(30, 30) // nothing newer
	cps, err := ListStreamCheckpoints(ctx, js, DefaultStreamName, j.ID())
	if err != nil || len(cps) != 1 {
		t.Fatalf("the bucket holds %v, %v", cps, err)
	}
	want, _, _ := j.LatestCheckpoint(30)
	got, err := FetchStreamCheckpoint(ctx, js, DefaultStreamName, cps[0])
	if err != nil || got.Seq != 30 || got.Hash != want.Hash || !got.Time.Equal(want.Time) || !bytes.Equal(got.Data, want.Data) {
		t.Fatalf("the checkpoint in the bucket is not the journal's: seq %d, same hash %v, same data %v, %v", got.Seq, got.Hash == want.Hash, bytes.Equal(got.Data, want.Data), err)
	}

	// A checkpoint whose record the stream does not hold yet waits.
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	appendN(t, j, 100, 30)
	if err := j.SaveCheckpoint(125, data(125)); err != nil {
		t.Fatal(err)
	}
	ship(30, 30)
	if got := list(); !slices.Equal(got, []uint64{30}) {
		t.Fatalf("a checkpoint past the stream was shipped: the bucket holds %v", got)
	}
	ob, err = NewOutbox(j, nc, OutboxOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	runOutbox(t, ob)
	published(130)
	ship(30, 125)

	// The stream's limits remove its first 59 records: the checkpoint at
	// 30 is of no use any more, the one at 125 still is.
	st, err := js.Stream(ctx, DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(60)); err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 130, 20)
	published(150)
	if err := j.SaveCheckpoint(140, data(140)); err != nil {
		t.Fatal(err)
	}
	ship(125, 140)
	if got := list(); !slices.Equal(got, []uint64{125, 140}) {
		t.Fatalf("after the stream lost records 1-59 the bucket holds %v, want [125 140]", got)
	}
	first, err := StreamFirstRecord(ctx, st)
	if err != nil || first != 60 {
		t.Fatalf("the stream's first record: %d, %v", first, err)
	}
	cps, _ = ListStreamCheckpoints(ctx, js, DefaultStreamName, j.ID())
	oldest, ok := StartCheckpoint(cps, first, false)
	if !ok || oldest.Seq != 125 {
		t.Fatalf("replay starts at %+v", oldest)
	}
	if newest, ok := StartCheckpoint(cps, first, true); !ok || newest.Seq != 140 {
		t.Fatalf("a standby starts at %+v", newest)
	}
	if _, ok := StartCheckpoint(cps, 142, false); ok {
		t.Fatal("a checkpoint two records before the stream's start was offered")
	}

	// A new copy: seeded from the bucket, the stream's records after it.
	c, err := FetchStreamCheckpoint(ctx, js, DefaultStreamName, oldest)
	if err != nil {
		t.Fatal(err)
	}
	copyJ, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger(), ID: j.ID()})
	if err := copyJ.Seed(ctx, c); err != nil {
		t.Fatal(err)
	}
	for seq := c.Seq + 1; seq <= 150; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		r, err := DecodeRecord(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := copyJ.Import(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := copyJ.Verify(ctx); err != nil || n != 25 {
		t.Fatalf("the copy verifies %d records: %v", n, err)
	}
	srcLast, srcHead := j.Last()
	if last, head := copyJ.Last(); last != srcLast || head != srcHead {
		t.Fatalf("the copy ends at %d, the journal at %d (same head: %v)", last, srcLast, head == srcHead)
	}
}

// TestThinBucketKeepsWhatReadersNeed: a month of hourly checkpoints, of
// a stream that keeps a week, thins to about twenty: the newest two always
// among them, none the stream cannot continue, and replay of the stream
// starting within an eighth of the week of its first record.
func TestThinBucketKeepsWhatReadersNeed(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var cps []StreamCheckpoint
	most, lag := 0, time.Duration(0)
	for h := 0; h < 30*24; h++ {
		seq := uint64(h+1) * 1000
		cps = append(cps, StreamCheckpoint{Name: fmt.Sprint(seq), Seq: seq, Time: t0.Add(time.Duration(h) * time.Hour)})
		first := uint64(1)
		if h >= 7*24 { // the stream keeps a week
			first = uint64(h-7*24)*1000 + 1
		}
		drop := thinBucket(cps, first, time.Hour)
		cps = slices.DeleteFunc(cps, func(c StreamCheckpoint) bool { return slices.Contains(drop, c) })
		if len(cps) > 20 {
			t.Fatalf("hour %d: %d checkpoints kept", h, len(cps))
		}
		if cps[len(cps)-1].Seq != seq || len(cps) > 1 && cps[len(cps)-2].Seq != seq-1000 {
			t.Fatalf("hour %d: the newest two were not kept: %v", h, cps)
		}
		if cps[0].Seq+1 < first {
			t.Fatalf("hour %d: checkpoint %d kept, the stream starts at %d", h, cps[0].Seq, first)
		}
		c, ok := StartCheckpoint(cps, first, false)
		behind := c.Time.Sub(t0.Add(time.Duration(max(h-7*24, 0)) * time.Hour))
		if !ok || behind > 7*24*time.Hour/8 {
			t.Fatalf("hour %d: replay of the stream would start at %+v", h, c)
		}
		most, lag = max(most, len(cps)), max(lag, behind)
	}
	t.Logf("at most %d checkpoints kept; replay started at most %v after the stream's first record", most, lag)
}

// TestShipCheckpointsLooksAtOnce: a controller that starts with a
// checkpoint the stream already continues ships it at once, not at its
// first tick (a minute, at the hourly default): a standby may be waiting
// on a stream past its limits for exactly that.
func TestShipCheckpointsLooksAtOnce(t *testing.T) {
	dir := t.TempDir()
	srv := startNATS(t, dir+"/nats")
	nc := connect(t, NATSConfig{Embedded: srv})
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	ob, err := NewOutbox(j, nc, OutboxOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer runOutbox(t, ob)()
	appendN(t, j, 0, 40)
	eventually(t, 30*time.Second, "record 40 published", func() bool { return ob.Published() >= 40 })
	if err := j.SaveCheckpoint(30, bytes.Repeat([]byte("state;"), 1000)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.ShipCheckpoints(ctx, time.Hour) }()
	defer func() { cancel(); <-done }()
	eventually(t, 20*time.Second, "checkpoint 30 shipped, well before the first tick (a minute)", func() bool { return ob.Shipped() == 30 })
}
