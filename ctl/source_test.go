package ctl

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/tracing"
)

// stateBytes is s as a checkpoint encodes it: two states are the same
// when these are.
func stateBytes(t *testing.T, s *projections.State) []byte {
	t.Helper()
	b, err := journal.EncodeCheckpoint(&projections.Books{State: s, Open: map[string]projections.OpenIntent{}, Rollouts: map[string]projections.RolloutOrigin{}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readLatest reads src as status does and returns the state and the
// records it read.
func readLatest(t *testing.T, src Source) (*projections.State, []uint64) {
	t.Helper()
	s := projections.New()
	var read []uint64
	err := src.ReadLatest(context.Background(), func(b *projections.Books) error { s = b.State; return nil }, func(r journal.Record) error {
		read = append(read, r.Seq)
		return s.Apply(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, read
}

// olderController serves j's journal API as a controller from before its
// checkpoint and rollout parameters did: every record.
func olderController(t *testing.T, j *journal.Journal) Source {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", LiveContentType)
		if err := WriteJournal(r.Context(), w, j, JournalRequest{From: 1}); err != nil {
			t.Error(err)
		}
	}))
	t.Cleanup(hs.Close)
	return Source{Live: &Live{URL: hs.URL}}
}

// TestReadLatestStartsAtTheNewestCheckpoint: status and a dry run's plan
// read a journal from its newest checkpoint, from a directory and through
// the journal API, and get the state the whole journal folds to. A newest
// checkpoint that does not load, and a controller that does not know the
// API's checkpoint parameter, cost a read from record 1, not a wrong
// state.
func TestReadLatestStartsAtTheNewestCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j, at := recordedJournalIn(t, dir, 0)
	last, _ := j.Last()
	whole := projections.New()
	if err := j.Read(ctx, 1, func(r journal.Record) error { return whole.Apply(r) }); err != nil {
		t.Fatal(err)
	}
	want := stateBytes(t, whole)
	newest := at[len(at)-1]
	if newest >= last {
		t.Fatalf("the fixture's newest checkpoint is at its last record %d: nothing to read after it", last)
	}
	expect := func(name string, src Source, from uint64) {
		t.Helper()
		s, read := readLatest(t, src)
		if len(read) == 0 || read[0] != from || read[len(read)-1] != last || uint64(len(read)) != last-from+1 {
			t.Fatalf("%s: read %d records (%v…), want records %d..%d", name, len(read), read[:min(len(read), 3)], from, last)
		}
		if !bytes.Equal(stateBytes(t, s), want) {
			t.Fatalf("%s: the state from record %d is not the fold of the whole journal", name, from)
		}
	}
	expect("journal API", Source{Live: serve(t, j)}, newest+1)
	expect("an older controller's journal API", olderController(t, j), 1)
	j.Close() // as a stopped controller's journal, or a copy
	expect("directory", Source{Dir: dir}, newest+1)

	// A newest checkpoint this binary cannot read.
	j, err := journal.Open(dir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	if err := j.SaveCheckpoint(last-1, []byte("not a checkpoint")); err != nil {
		t.Fatal(err)
	}
	expect("journal API, the newest checkpoint unreadable", Source{Live: serve(t, j)}, 1)
	j.Close()
	expect("directory, the newest checkpoint unreadable", Source{Dir: dir}, 1)

	if _, err := ParseJournalRequest(map[string][]string{"checkpoint": {"oldest"}}); err == nil {
		t.Fatal("checkpoint=oldest was taken")
	}
}

// TestReadRolloutStartsWhereItsRecordsBegin: history, trace and report
// read a rollout from the record that first showed it, from a directory
// and through the journal API, and rebuild the spans the whole journal
// gives: when the newest checkpoint names where it begins, and when the
// rollout is younger than the newest checkpoint. A rollout that is not
// there, and a controller that does not know the API's rollout
// parameter, cost a read from record 1.
func TestReadRolloutStartsWhereItsRecordsBegin(t *testing.T) {
	const rollout, origin = "testlifecyclehooksholdandrelease-4/db-v2", 69
	for _, c := range []struct {
		name string
		upTo uint64 // checkpoints up to this record
	}{{"named by the newest checkpoint", 0}, {"younger than the newest checkpoint", origin - 1}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			j, at := recordedJournalIn(t, dir, c.upTo)
			if newest := at[len(at)-1]; (newest < origin) != (c.upTo != 0) {
				t.Fatalf("the newest checkpoint is at record %d", newest)
			}
			whole, err := tracing.Build(ctx, j.Read, rollout)
			if err != nil || len(whole) == 0 {
				t.Fatalf("the whole journal: %d spans, %v", len(whole), err)
			}
			want, err := json.Marshal(TraceSpans(whole))
			if err != nil {
				t.Fatal(err)
			}
			if got := RolloutOrigin(ctx, j, rollout); got != origin {
				t.Fatalf("%s begins at record %d, found %d", rollout, origin, got)
			}
			expect := func(name string, src Source, rollout string, from uint64) {
				t.Helper()
				var got uint64 // the first record read
				err := src.ReadRolloutRecords(ctx, rollout, func(r journal.Record) error {
					got = cmp.Or(got, r.Seq)
					return nil
				})
				if err != nil || got != from {
					t.Fatalf("%s: %s read from record %d (%v), want %d", name, rollout, got, err, from)
				}
				spans, err := Spans(ctx, src, rollout)
				if err != nil {
					t.Fatal(err)
				}
				b, err := json.Marshal(TraceSpans(spans))
				if err != nil {
					t.Fatal(err)
				}
				if rollout != "nowhere/none" && !bytes.Equal(b, want) {
					t.Fatalf("%s: the spans from record %d are not those of the whole journal:\n%s\nwant\n%s", name, from, b, want)
				}
			}
			expect("journal API", Source{Live: serve(t, j)}, rollout, origin)
			expect("journal API, a rollout it does not hold", Source{Live: serve(t, j)}, "nowhere/none", 1)
			expect("an older controller's journal API", olderController(t, j), rollout, 1)
			j.Close()
			expect("directory", Source{Dir: dir}, rollout, origin)
			expect("directory, a rollout it does not hold", Source{Dir: dir}, "nowhere/none", 1)
		})
	}
}
