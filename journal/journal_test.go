package journal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TestAppendNumbersAndChains: sequences start at 1 and run without gaps
// across calls, each Prev is the Hash before, times never decrease, and
// what Append returns is exactly what Read gives back from disk.
func TestAppendNumbersAndChains(t *testing.T) {
	j, _ := openTemp(t, Options{})
	ctx := testCtx(t)
	var appended []Record
	for i, n := range []int{1, 5, 2} {
		var es []Entry
		for k := 0; k < n; k++ {
			es = append(es, entry(t, 10*i+k))
		}
		recs, err := j.Append(ctx, nil, es...)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != n {
			t.Fatalf("append %d returned %d records, want %d", i, len(recs), n)
		}
		appended = append(appended, recs...)
	}
	read := readAll(t, j)
	if !reflect.DeepEqual(read, appended) {
		t.Fatalf("read back differs from appended:\n%+v\n%+v", read, appended)
	}
	var prev [32]byte
	for i, r := range read {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		if r.Prev != prev {
			t.Fatalf("record %d: prev does not link", r.Seq)
		}
		if i > 0 && r.Time.Before(read[i-1].Time) {
			t.Fatalf("record %d: time went backwards", r.Seq)
		}
		prev = r.Hash
	}
	if seq, h := j.Last(); seq != 8 || h != prev {
		t.Fatalf("Last() = %d %x, want 8 %x", seq, h[:4], prev[:4])
	}
	if n, err := j.Verify(ctx); err != nil || n != 8 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	var o Observed
	if err := read[3].Decode(&o); err != nil || o.Resource != "pods" {
		t.Fatalf("decode body: %v %+v", err, o)
	}
}

// TestReadFromAnySequence: Read starts anywhere, stops on ErrStop, and
// hands back fn's own error untouched.
func TestReadFromAnySequence(t *testing.T) {
	j, _ := openTemp(t, Options{})
	ctx := testCtx(t)
	for i := 0; i < 10; i++ {
		if _, err := j.Append(ctx, nil, entry(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(from uint64, stopAt uint64) []uint64 {
		var out []uint64
		err := j.Read(ctx, from, func(r Record) error {
			out = append(out, r.Seq)
			if r.Seq == stopAt {
				return ErrStop
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := seqs(7, 0); !reflect.DeepEqual(got, []uint64{7, 8, 9, 10}) {
		t.Fatalf("from 7: %v", got)
	}
	if got := seqs(0, 3); !reflect.DeepEqual(got, []uint64{1, 2, 3}) {
		t.Fatalf("from 0 stop at 3: %v", got)
	}
	if got := seqs(11, 0); len(got) != 0 {
		t.Fatalf("from 11: %v", got)
	}
	mine := errors.New("mine")
	if err := j.Read(ctx, 1, func(Record) error { return mine }); err != mine {
		t.Fatalf("fn error came back as %v", err)
	}
}

// TestTimeNeverDecreases: a clock that jumps back does not make record
// times go back; the planner's "now" only moves forward.
func TestTimeNeverDecreases(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(-time.Second)
		return now
	}
	j, _ := openTemp(t, Options{Now: clock})
	for i := 0; i < 5; i++ {
		if _, err := j.Append(testCtx(t), nil, entry(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	recs := readAll(t, j)
	for _, r := range recs[1:] {
		if !r.Time.Equal(recs[0].Time) {
			t.Fatalf("record %d time %v, want %v (clamped)", r.Seq, r.Time, recs[0].Time)
		}
	}
}

// TestGroupCommitConcurrent: 16 concurrent appenders; every sequence
// 1..N appears exactly once, each call's records are contiguous and in
// order, batches held several calls (group commit happened) and never more
// than MaxBatch records, and the chain verifies.
func TestGroupCommitConcurrent(t *testing.T) {
	const writers, calls, maxBatch = 16, 60, 32
	j, _ := openTemp(t, Options{MaxBatch: maxBatch})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	got := make([][]Record, writers)
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := 0; c < calls; c++ {
				n := 1 + (w+c)%3 // 1..3 entries per call
				es := make([]Entry, n)
				for k := range es {
					es[k] = entry(t, w*100000+c*10+k)
				}
				recs, err := j.Append(ctx, nil, es...)
				if err != nil {
					errs <- err
					return
				}
				for k := 1; k < len(recs); k++ {
					if recs[k].Seq != recs[k-1].Seq+1 {
						errs <- fmt.Errorf("writer %d: call split: %d then %d", w, recs[k-1].Seq, recs[k].Seq)
						return
					}
				}
				for k, r := range recs {
					if r.Key != es[k].Key {
						errs <- fmt.Errorf("writer %d: record %d has key %q, want %q", w, r.Seq, r.Key, es[k].Key)
						return
					}
				}
				got[w] = append(got[w], recs...)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	total := 0
	for _, rs := range got {
		for _, r := range rs {
			seen[r.Seq]++
			total++
		}
	}
	last, _ := j.Last()
	if uint64(total) != last {
		t.Fatalf("appended %d records, journal ends at %d", total, last)
	}
	for s := uint64(1); s <= last; s++ {
		if seen[s] != 1 {
			t.Fatalf("sequence %d returned %d times", s, seen[s])
		}
	}
	if n, err := j.Verify(ctx); err != nil || n != last {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	batches := j.batches.Load()
	t.Logf("%d records, %d calls in %d synced batches (largest %d records)", total, writers*calls, batches, j.maxRecords.Load())
	if batches >= writers*calls {
		t.Fatalf("%d batches for %d calls: no group commit happened", batches, writers*calls)
	}
	if m := j.maxRecords.Load(); m > maxBatch {
		t.Fatalf("a batch held %d records, MaxBatch is %d", m, maxBatch)
	}
}

// TestMaxBatchIsSoft: an Append larger than MaxBatch is committed whole,
// in one batch, never split.
func TestMaxBatchIsSoft(t *testing.T) {
	j, _ := openTemp(t, Options{MaxBatch: 4})
	es := make([]Entry, 10)
	for i := range es {
		es[i] = entry(t, i)
	}
	recs, err := j.Append(testCtx(t), nil, es...)
	if err != nil || len(recs) != 10 || recs[9].Seq != 10 {
		t.Fatalf("append: %v, %d records", err, len(recs))
	}
	if b := j.batches.Load(); b != 1 {
		t.Fatalf("%d batches, want 1", b)
	}
}

// TestCursorAtomicWithRecords: a cursor written with an Append is never
// visible ahead of its records: while 8 writers append (each record's key
// also written as the cursor), a reader that sees the cursor always finds
// the record it names. Also a cursor-only Append and an unwritten cursor.
func TestCursorAtomicWithRecords(t *testing.T) {
	j, _ := openTemp(t, Options{})
	ctx := testCtx(t)
	if _, ok, err := j.Cursor("watch/pods"); ok || err != nil {
		t.Fatalf("unwritten cursor: %v %v", ok, err)
	}
	const writers, calls = 8, 40
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := 0; c < calls; c++ {
				e := entry(t, w*1000+c)
				if _, err := j.Append(ctx, []Cursor{{Name: "watch/pods", Value: e.Key}}, e); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	checks := 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		v, ok, err := j.Cursor("watch/pods")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		found := false
		if err := j.Read(ctx, 1, func(r Record) error {
			if r.Key == v {
				found = true
				return ErrStop
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !found {
			t.Fatalf("cursor names %q, which no readable record has", v)
		}
		checks++
	}
	t.Logf("%d consistent cursor reads during the appends", checks)

	// A cursor-only Append (a bookmark: the resourceVersion moved, no object
	// changed) writes the cursor and no record.
	before, _ := j.Last()
	recs, err := j.Append(ctx, []Cursor{{Name: "watch/pods", Value: "rv-9"}})
	if err != nil || len(recs) != 0 {
		t.Fatalf("cursor-only append: %v %v", recs, err)
	}
	if after, _ := j.Last(); after != before {
		t.Fatalf("cursor-only append moved the log from %d to %d", before, after)
	}
	if v, ok, _ := j.Cursor("watch/pods"); !ok || v != "rv-9" {
		t.Fatalf("cursor = %q %v", v, ok)
	}
}

// TestReopenContinues: after Close and Open the ID, the tail, the cursors
// and the chain carry on: sequences continue, record N+1 links to N.
func TestReopenContinues(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID()
	if len(id) != 16 {
		t.Fatalf("journal ID %q", id)
	}
	if _, err := j.Append(ctx, []Cursor{{Name: "c", Value: "v1"}}, entry(t, 1), entry(t, 2)); err != nil {
		t.Fatal(err)
	}
	seq1, h1 := j.Last()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := j.Append(ctx, nil, entry(t, 3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}

	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.ID() != id {
		t.Fatalf("ID changed across reopen: %s -> %s", id, j.ID())
	}
	if seq, h := j.Last(); seq != seq1 || h != h1 {
		t.Fatalf("tail after reopen %d %x, want %d %x", seq, h[:4], seq1, h1[:4])
	}
	if v, ok, err := j.Cursor("c"); err != nil || !ok || v != "v1" {
		t.Fatalf("cursor after reopen: %q %v %v", v, ok, err)
	}
	recs, err := j.Append(ctx, nil, entry(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Seq != seq1+1 || recs[0].Prev != h1 {
		t.Fatalf("record after reopen: seq %d prev %x, want %d %x", recs[0].Seq, recs[0].Prev[:4], seq1+1, h1[:4])
	}
	if n, err := j.Verify(ctx); err != nil || n != 3 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

// tamper opens the store under dir directly and applies fn.
func tamper(t *testing.T, dir string, fn func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: newPebbleLogger(discardLogger())})
	if err != nil {
		t.Fatal(err)
	}
	fn(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func getValue(t *testing.T, db *pebble.DB, seq uint64) []byte {
	t.Helper()
	v, c, err := db.Get(logKey(seq))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return append([]byte(nil), v...)
}

// TestVerifyFindsCorruption: a flipped byte in record 7 is reported at 7
// (ErrCorrupt); a record rewritten with a valid checksum is caught by the
// chain at the record after it (ErrBrokenChain); a deleted record is a gap
// at its sequence. Read fails the same way; Open still works (it only
// checks the last record).
func TestVerifyFindsCorruption(t *testing.T) {
	ctx := testCtx(t)
	build := func() string {
		dir := t.TempDir()
		j, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			if _, err := j.Append(ctx, nil, entry(t, i)); err != nil {
				t.Fatal(err)
			}
		}
		j.Close()
		return dir
	}
	check := func(name, dir string, wantSeq uint64, want error) {
		t.Helper()
		j, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		defer j.Close()
		n, err := j.Verify(ctx)
		var le *LinkError
		if !errors.As(err, &le) || le.Seq != wantSeq || !errors.Is(err, want) {
			t.Fatalf("%s: Verify = %d, %v; want a LinkError at %d wrapping %v", name, n, err, wantSeq, want)
		}
		if n != wantSeq-1 {
			t.Fatalf("%s: Verify counted %d good records, want %d", name, n, wantSeq-1)
		}
		if !strings.HasPrefix(err.Error(), fmt.Sprintf("journal: record %d: ", wantSeq)) {
			t.Fatalf("%s: message %q", name, err)
		}
		if err := j.Read(ctx, 1, func(Record) error { return nil }); !errors.Is(err, want) {
			t.Fatalf("%s: Read = %v, want %v", name, err, want)
		}
		t.Logf("%s: %v", name, err)
	}

	dir := build()
	tamper(t, dir, func(db *pebble.DB) {
		v := getValue(t, db, 7)
		v[len(v)/2] ^= 0x01
		if err := db.Set(logKey(7), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	check("flipped byte", dir, 7, ErrCorrupt)

	dir = build()
	tamper(t, dir, func(db *pebble.DB) {
		r, err := DecodeRecord(getValue(t, db, 7))
		if err != nil {
			t.Fatal(err)
		}
		r.Key = "pods/shop/forged"
		v, _, err := encodeRecord(&r) // a valid checksum for the forged record
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Set(logKey(7), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	check("forged record", dir, 8, ErrBrokenChain)

	dir = build()
	tamper(t, dir, func(db *pebble.DB) {
		if err := db.Delete(logKey(12), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	check("deleted record", dir, 12, ErrBrokenChain)

	dir = build()
	tamper(t, dir, func(db *pebble.DB) {
		v := getValue(t, db, 20)
		v[3] ^= 0x40
		if err := db.Set(logKey(20), v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a corrupt last record: %v, want ErrCorrupt", err)
	}

	// A cursor claiming to cover a record no batch ever held.
	dir = build()
	tamper(t, dir, func(db *pebble.DB) {
		if err := db.Set(cursorKey("watch/pods"), cursorValue(999, "rv"), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	})
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, _, err := j.Cursor("watch/pods"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("cursor ahead of the log: %v, want ErrCorrupt", err)
	}
}

// TestOptionsValidate: bad options are errors with the package prefix,
// never silently corrected.
func TestOptionsValidate(t *testing.T) {
	if _, err := Open(t.TempDir(), Options{MaxBatch: -1}); err == nil || !strings.HasPrefix(err.Error(), "journal: ") {
		t.Fatalf("MaxBatch -1: %v", err)
	}
	j, _ := openTemp(t, Options{})
	if _, err := j.Append(testCtx(t), nil, Entry{Kind: KindTick}); err == nil {
		t.Fatal("empty key accepted")
	}
	if _, err := j.Append(testCtx(t), []Cursor{{Value: "x"}}); err == nil {
		t.Fatal("unnamed cursor accepted")
	}
	for _, o := range []OutboxOptions{
		{Window: -1},
		{AckTimeout: -time.Second},
		{MinBackoff: time.Second, MaxBackoff: time.Millisecond},
		{SubjectPrefix: "a..b"},
		{SubjectPrefix: "a.*"},
		{Stream: streamConfig("BAD.NAME")},
	} {
		if err := o.setDefaults(); err == nil || !strings.HasPrefix(err.Error(), "journal: ") {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

// TestFollowAndWait: Follow delivers records committed after it started,
// in order, and returns ErrClosed when the journal closes; Wait returns
// once a later record commits.
func TestFollowAndWait(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := j.Append(ctx, nil, entry(t, 0)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []uint64
	followed := make(chan error, 1)
	go func() {
		followed <- j.Follow(ctx, 1, func(r Record) error {
			mu.Lock()
			seen = append(seen, r.Seq)
			mu.Unlock()
			return nil
		})
	}()
	waited := make(chan uint64, 1)
	go func() {
		s, err := j.Wait(ctx, 5)
		if err != nil {
			t.Error(err)
		}
		waited <- s
	}()
	for i := 1; i < 30; i++ {
		if _, err := j.Append(ctx, nil, entry(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "follower to see 30 records", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 30
	})
	for i, s := range seen {
		if s != uint64(i+1) {
			t.Fatalf("follower saw %v", seen)
		}
	}
	if s := <-waited; s <= 5 {
		t.Fatalf("Wait(5) returned %d", s)
	}
	j.Close()
	select {
	case err := <-followed:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Follow after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return after Close")
	}
}

// TestCloseCommitsQueued: Appends racing with Close either return their
// records, which are then on disk, or ErrClosed; none hangs, none is lost.
func TestCloseCommitsQueued(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []Record
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := 0; ; c++ {
				recs, err := j.Append(ctx, nil, entry(t, w*1000+c))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, recs...)
				mu.Unlock()
			}
		}()
	}
	eventually(t, 10*time.Second, "some appends", func() bool { s, _ := j.Last(); return s >= 50 })
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	all := readAll(t, j)
	if len(all) != len(acked) {
		t.Fatalf("%d records on disk, %d acknowledged", len(all), len(acked))
	}
	for _, r := range acked {
		if !reflect.DeepEqual(all[r.Seq-1], r) {
			t.Fatalf("acknowledged record %d differs on disk", r.Seq)
		}
	}
}

// TestAppendContextCanceled: an Append whose ctx has ended writes nothing
// and fails with the ctx's error, wrapped.
func TestAppendContextCanceled(t *testing.T) {
	j, _ := openTemp(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	recs, err := j.Append(ctx, nil, entry(t, 1))
	if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "journal: ") || recs != nil {
		t.Fatalf("append with canceled ctx: %v %v", recs, err)
	}
	if seq, _ := j.Last(); seq != 0 {
		t.Fatalf("a canceled append wrote up to %d", seq)
	}
}
