package journal

import (
	"testing"
	"time"
)

// A month of records, a checkpoint every six hours: retention by age keeps
// what is younger than MaxAge (within a checkpoint's spacing), never what
// the floor protects, and thins the checkpoints to a bounded few.
func TestRetainByAgeKeepsTheFloorAndThins(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger(), Now: func() time.Time { return now }})
	seqAt := map[int]uint64{} // hour → last record of that hour
	for h := 0; h < 30*24; h++ {
		now = t0.Add(time.Duration(h) * time.Hour)
		last := appendEach(t, j, h*2, 2)
		seqAt[h] = last.Seq
		if h%6 == 5 {
			if err := j.SaveCheckpoint(last.Seq, []byte("state")); err != nil {
				t.Fatal(err)
			}
		}
	}
	end := now
	r := Retention{MaxAge: 7 * 24 * time.Hour}
	// A floor inside the retained week: nothing to hold back.
	if err := j.Retain(testCtx(t), r, seqAt[25*24], end); err != nil {
		t.Fatal(err)
	}
	first := j.First()
	recs := readAll(t, j)
	oldest := recs[0].Time
	if age := end.Sub(oldest); age < r.MaxAge || age > r.MaxAge+6*time.Hour+time.Hour {
		t.Fatalf("the oldest record kept is %v old, want %v to %v more", age, r.MaxAge, 7*time.Hour)
	}
	if _, err := j.Verify(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	infos, _ := j.Checkpoints()
	if len(infos) > 16+3 {
		t.Fatalf("%d checkpoints kept after thinning, want at most 19", len(infos))
	}
	if infos[0].Seq != first-1 {
		t.Fatalf("the checkpoint the log starts from (%d) was thinned away; first kept is %d", first-1, infos[0].Seq)
	}
	// A floor far back (an unpublished record, a running rollout's
	// first) holds retention at the checkpoint below it.
	j2, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	appendEach(t, j2, 0, 100)
	for _, seq := range []uint64{10, 50, 90} {
		if err := j2.SaveCheckpoint(seq, []byte("s")); err != nil {
			t.Fatal(err)
		}
	}
	if err := j2.db.Flush(); err != nil { // size is what is on disk
		t.Fatal(err)
	}
	if err := j2.Retain(testCtx(t), Retention{MaxBytes: 1}, 60, time.Now()); err != nil {
		t.Fatal(err)
	}
	if j2.First() != 51 {
		t.Fatalf("with floor 60 the log starts at %d, want 51 (the checkpoint at 50)", j2.First())
	}
}

// TestRetainBySizeHoldsTheBound: retention by size leaves a log of pod
// records, in tables of the journal's block size, within its bound, and
// prunes no more than a checkpoint's span past what the bound needs.
func TestRetainBySizeHoldsTheBound(t *testing.T) {
	j, _ := openTemp(t, Options{NoSync: true, Logger: discardLogger()})
	const spans, span = 20, 1000
	for s := range spans {
		batch := make([]Entry, span)
		for i := range batch {
			batch[i] = entry(t, s*span+i)
		}
		recs, err := j.Append(testCtx(t), nil, batch...)
		if err != nil {
			t.Fatal(err)
		}
		if err := j.SaveCheckpoint(recs[len(recs)-1].Seq, []byte("state")); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.db.Flush(); err != nil { // size is what is on disk
		t.Fatal(err)
	}
	size, err := j.LogBytes()
	if err != nil {
		t.Fatal(err)
	}
	bound := size / 2
	last, _ := j.Last()
	if err := j.Retain(testCtx(t), Retention{MaxBytes: bound}, last+1, time.Now()); err != nil {
		t.Fatal(err)
	}
	after, err := j.LogBytes()
	if err != nil {
		t.Fatal(err)
	}
	if after > bound || after < bound-2*size/spans {
		t.Fatalf("retention to %d bytes of a %d-byte log left %d bytes (records %d on), want at most the bound and within a span of it", bound, size, after, j.First())
	}
	if _, err := j.Verify(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}
