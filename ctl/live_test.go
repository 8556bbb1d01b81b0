package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// testJournal is a real Pebble journal of n tick records.
func testJournal(t testing.TB, n int) *journal.Journal {
	t.Helper()
	j, err := journal.Open(t.TempDir(), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	body, err := journal.EncodeBody(journal.TickFact{Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for done := 0; done < n; {
		batch := make([]journal.Entry, min(1000, n-done))
		for i := range batch {
			batch[i] = journal.Entry{Kind: journal.KindTick, Key: fmt.Sprintf("tick/%d", done+i), Body: body}
		}
		if _, err := j.Append(context.Background(), nil, batch...); err != nil {
			t.Fatal(err)
		}
		done += len(batch)
	}
	return j
}

// serve serves j's journal API as the controller does (without its
// authorisation, which cmd/rollbook's e2e test covers).
func serve(t testing.TB, j *journal.Journal) *Live {
	return serveAs(t, j, func(url.Values) {})
}

// serveAs is serve, for a controller that ignores some of the parameters:
// edit removes them from each request's.
func serveAs(t testing.TB, j *journal.Journal, edit func(url.Values)) *Live {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		edit(q)
		req, err := ParseJournalRequest(q)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if req.Rollout != "" { // the controller asks its books; these are the newest checkpoint's
			req.From = max(req.From, RolloutOrigin(r.Context(), j, req.Rollout))
		}
		w.Header().Set("Content-Type", LiveContentType)
		if err := WriteJournal(r.Context(), w, j, req); err != nil {
			t.Error(err)
		}
	}))
	t.Cleanup(hs.Close)
	return &Live{URL: hs.URL}
}

// TestLiveReadsTheJournal: the journal API passes every record, checked
// link by link, and a pruned journal's checkpoint, as a reader of the
// directory would get them.
func TestLiveReadsTheJournal(t *testing.T) {
	j := testJournal(t, 10_000) // several batches (liveBatch)
	live := serve(t, j)
	var want []journal.Record
	if err := j.Read(context.Background(), 1, func(r journal.Record) error { want = append(want, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var got []journal.Record
	if err := (Source{Live: live}).Read(context.Background(), func(r journal.Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || got[len(got)-1].Hash != want[len(want)-1].Hash || got[0].Key != want[0].Key {
		t.Fatalf("read %d records through the API, the journal has %d", len(got), len(want))
	}
	if live.journalID != j.ID() {
		t.Fatalf("journal ID %q, want %q", live.journalID, j.ID())
	}

	// Pruned below a checkpoint: the reader starts from the checkpoint's
	// books and the chain from its anchor.
	books := projections.NewBooks()
	books.State.Seq = 1000
	data, err := journal.EncodeCheckpoint(books)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.SaveCheckpoint(1000, data); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
	var base *projections.Books
	n := 0
	err = (Source{Live: live}).ReadFrom(context.Background(), func(b *projections.Books) error { base = b; return nil }, func(r journal.Record) error {
		if n == 0 && r.Seq != 1001 {
			return fmt.Errorf("first record %d, want 1001", r.Seq)
		}
		n++
		return nil
	})
	if err != nil || base == nil || base.State.Seq != 1000 || n != 9000 {
		t.Fatalf("pruned journal: %v, base %v, %d records", err, base != nil, n)
	}
}

// TestLiveSendsTheCheckpointAsAsked: a stream that starts after a
// checkpoint carries it in pieces to a reader that folds it, not at all
// to one that does not, and in the header to a reader older than
// checkpoint-data; a reader meets each of those forms the same, also
// from a controller that ignores the parameter.
func TestLiveSendsTheCheckpointAsAsked(t *testing.T) {
	j := testJournal(t, 3_000)
	books := projections.NewBooks()
	books.State.Seq = 2_000
	for i := range 40_000 { // some megabytes: several stretches, many pieces
		name := fmt.Sprintf("web-%d", i)
		books.State.Pods["shop/"+name] = projections.NewPod(&journal.Observed{Resource: "pods", Namespace: "shop", Name: name, UID: fmt.Sprintf("u-%d", i), ResourceVersion: "7"})
	}
	data, err := journal.EncodeCheckpoint(books)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 3*liveStretch/2 {
		t.Fatalf("the checkpoint is %d bytes: too small to come in stretches", len(data))
	}
	if err := j.SaveCheckpoint(2_000, data); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// What each form puts on the wire.
	for _, form := range []string{CheckpointInHeader, CheckpointInPieces, CheckpointLeftOut} {
		var b strings.Builder
		if err := WriteJournal(ctx, &b, j, JournalRequest{From: 1, Latest: true, Checkpoint: form}); err != nil {
			t.Fatal(err)
		}
		head, rest, _ := strings.Cut(b.String(), "\n")
		var h liveHeader
		if err := json.Unmarshal([]byte(head), &h); err != nil {
			t.Fatalf("%q: header %.200s: %v", form, head, err)
		}
		if h.First != 2_001 {
			t.Fatalf("%q: the stream starts at %d, want 2001", form, h.First)
		}
		switch form {
		case CheckpointInHeader:
			if !bytes.Equal(h.Checkpoint, data) || h.Pieces {
				t.Fatalf("in the header: %d bytes of the checkpoint's %d", len(h.Checkpoint), len(data))
			}
		case CheckpointInPieces:
			if h.Checkpoint != nil || !h.Pieces || h.CheckpointBytes != uint64(len(data)) || len(rest) < len(data) {
				t.Fatalf("in pieces: header %+v, %d bytes after it for a checkpoint of %d", h, len(rest), len(data))
			}
		case CheckpointLeftOut:
			if h.Checkpoint != nil || h.Pieces || len(rest) > len(data)/2 {
				t.Fatalf("left out: header %+v, %d bytes after it", h, len(rest))
			}
		}
	}

	// What a reader makes of them: the state from the checkpoint and the
	// records after it, or the records alone.
	for _, older := range []bool{false, true} {
		live := serve(t, j)
		if older { // a controller older than checkpoint-data
			live = serveAs(t, j, func(q url.Values) { q.Del("checkpoint-data") })
		}
		var base *projections.Books
		n := 0
		err := (Source{Live: live}).ReadLatest(ctx, func(b *projections.Books) error { base = b; return nil }, func(journal.Record) error { n++; return nil })
		if err != nil || base == nil || len(base.State.Pods) != len(books.State.Pods) || n != 1_000 {
			t.Fatalf("older controller %v: the state now: %v, %d records after the checkpoint", older, err, n)
		}
	}
}

// TestLiveHoldsAStretchOfTheCheckpoint: serving a stream that starts after
// a checkpoint holds a stretch of it at a time, whatever its size and
// form. At 100,000 pods a checkpoint is ~150 MB: a controller that held
// it, and its base64, for each reader of its state would meet its memory
// limit (deploy/deployment.yaml: 1 GiB) with a few of them.
func TestLiveHoldsAStretchOfTheCheckpoint(t *testing.T) {
	j := testJournal(t, 100)
	// Compressible, as a real checkpoint is: Pebble's blocks then hold
	// it compressed, and reading it decompresses.
	var data []byte
	for i := 0; len(data) < 32<<20; i++ {
		data = fmt.Appendf(data, `{"name":"web-%d","labels":{"app":"web"},"image":"registry.example/app:v2"}`, i)
	}
	if err := j.SaveCheckpoint(50, data); err != nil {
		t.Fatal(err)
	}
	if err := j.Prune(context.Background(), 50); err != nil {
		t.Fatal(err)
	}
	for _, req := range []JournalRequest{
		{From: 1, Latest: true, Checkpoint: CheckpointInPieces},
		{From: 1, Latest: true, Checkpoint: CheckpointInHeader},
		{From: 1, Checkpoint: CheckpointInHeader}, // pruned: from its first record
	} {
		w := heldWriter{base: heapAfterGC()}
		if err := WriteJournal(context.Background(), &w, j, req); err != nil {
			t.Fatal(err)
		}
		held := w.peak - min(w.peak, w.base)
		t.Logf("%+v: sent %d bytes, held %d at most", req, w.n, held)
		if w.n < len(data) {
			t.Fatalf("%+v: sent %d bytes of a %d-byte checkpoint", req, w.n, len(data))
		}
		if held > uint64(len(data))/4 {
			t.Errorf("%+v: serving a %d-byte checkpoint held %d bytes", req, len(data), held)
		}
	}
}

// heldWriter counts what is written to it and, after each MiB, what the
// writer holds: the heap a collection leaves, at its peak.
type heldWriter struct {
	n, next    int
	base, peak uint64
}

func (w *heldWriter) Write(p []byte) (int, error) {
	if w.n += len(p); w.n >= w.next {
		w.next = w.n + 1<<20
		w.peak = max(w.peak, heapAfterGC())
	}
	return len(p), nil
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLiveCutStream: a stream that ends before its end mark is an error,
// never a shorter history.
func TestLiveCutStream(t *testing.T) {
	j := testJournal(t, 100)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", LiveContentType)
		var b strings.Builder
		if err := WriteJournal(r.Context(), &b, j, JournalRequest{From: 1}); err != nil {
			t.Error(err)
		}
		full := b.String()
		w.Write([]byte(full[:len(full)/2]))
	}))
	defer hs.Close()
	err := (Source{Live: &Live{URL: hs.URL}}).Read(context.Background(), func(journal.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "was cut") {
		t.Fatalf("a cut stream read as %v", err)
	}
	// Cut in the middle of the checkpoint it starts after.
	if err := j.SaveCheckpoint(50, bytes.Repeat([]byte("state;"), 200_000)); err != nil {
		t.Fatal(err)
	}
	hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := ParseJournalRequest(r.URL.Query())
		if err != nil {
			t.Error(err)
		}
		w.Header().Set("Content-Type", LiveContentType)
		var b strings.Builder
		if err := WriteJournal(r.Context(), &b, j, req); err != nil {
			t.Error(err)
		}
		full := b.String()
		w.Write([]byte(full[:len(full)/2]))
	}))
	defer hs.Close()
	err = (Source{Live: &Live{URL: hs.URL}}).ReadLatest(context.Background(), func(*projections.Books) error { return nil }, func(journal.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "was cut in the checkpoint at record 50") {
		t.Fatalf("a stream cut in its checkpoint read as %v", err)
	}
	// Something that is not the journal API says so.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) }))
	defer other.Close()
	err = (Source{Live: &Live{URL: other.URL}}).Read(context.Background(), func(journal.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "not a Rollbook controller's journal API") {
		t.Fatalf("another server read as %v", err)
	}
}

// BenchmarkLiveRead: reading the journal through the API over loopback
// HTTP against reading the Pebble store in process (the baseline, same
// run, same journal): records/s of each and the ratio.
//
//	go test -run '^$' -bench BenchmarkLiveRead -benchtime 5x ./ctl
func BenchmarkLiveRead(b *testing.B) {
	const n = 200_000
	j := testJournal(b, n)
	live := serve(b, j)
	ctx := context.Background()
	var dirTime, liveTime time.Duration
	for b.Loop() {
		start := time.Now()
		count := 0
		if err := j.Read(ctx, 1, func(journal.Record) error { count++; return nil }); err != nil || count != n {
			b.Fatal(err, count)
		}
		dirTime += time.Since(start)
		start = time.Now()
		count = 0
		if err := (Source{Live: live}).Read(ctx, func(journal.Record) error { count++; return nil }); err != nil || count != n {
			b.Fatal(err, count)
		}
		liveTime += time.Since(start)
	}
	b.ReportMetric(float64(n*b.N)/dirTime.Seconds(), "dir-records/s")
	b.ReportMetric(float64(n*b.N)/liveTime.Seconds(), "live-records/s")
	b.ReportMetric(liveTime.Seconds()/dirTime.Seconds(), "live/dir-time")
}
