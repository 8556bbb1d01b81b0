package ctl

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := ParseJournalRequest(r.URL.Query())
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
