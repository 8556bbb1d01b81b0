package projections_test

import (
	"bytes"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// fixtureRecords reads a recorded journal export (test/replay/testdata).
func fixtureRecords(t *testing.T, path string) []journal.Record {
	t.Helper()
	var out []journal.Record
	if err := journal.ReadExportFile(path, func(r journal.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// A controller that restarts from a checkpoint must hold exactly what one
// that folded every record holds, and plan exactly the same: folded over
// real recorded rollouts, with a checkpoint saved and loaded every few
// records, the books never differ from the straight fold. And a
// checkpoint's data is what the CBOR library's core deterministic
// encoding makes of the books, byte for byte, though the journal encodes
// it a piece at a time: equal books, equal checkpoints, in any binary.
func TestCheckpointRoundTripMatchesTheStraightFold(t *testing.T) {
	// Their states compared Detached: what their caches hold depends on
	// the order the pods were folded in.
	sameBooks := func(a, b *projections.Books) bool {
		sa, sb := a.State.Detached(), b.State.Detached()
		return reflect.DeepEqual(sa, sb) && reflect.DeepEqual(a.Open, b.Open) && reflect.DeepEqual(a.Rollouts, b.Rollouts)
	}
	paths, err := filepath.Glob("../test/replay/testdata/*.jsonl.gz")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no recorded journals: %v", err)
	}
	coreDet, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			recs := fixtureRecords(t, path)
			straight, restarted := projections.NewBooks(), projections.NewBooks()
			every := max(len(recs)/25, 1)
			for i, r := range recs {
				if err := straight.Apply(r); err != nil {
					t.Fatal(err)
				}
				if err := restarted.Apply(r); err != nil {
					t.Fatal(err)
				}
				if i%every != every-1 {
					continue
				}
				data, err := journal.EncodeCheckpoint(restarted)
				if err != nil {
					t.Fatal(err)
				}
				if want, err := coreDet.Marshal(restarted); err != nil || !bytes.Equal(data, want) {
					t.Fatalf("record %d: the checkpoint is not the library's core deterministic encoding of the books (%v)", r.Seq, err)
				}
				restarted = &projections.Books{}
				if err := journal.DecodeCheckpoint(data, restarted); err != nil {
					t.Fatalf("record %d: %v", r.Seq, err)
				}
				if !sameBooks(straight, restarted) {
					t.Fatalf("after a checkpoint at record %d the books differ from the straight fold", r.Seq)
				}
				want, got := planner.Plan(straight.State), planner.Plan(restarted.State)
				if !reflect.DeepEqual(want, got) {
					t.Fatalf("after a checkpoint at record %d the plan differs:\nstraight %+v\nrestored %+v", r.Seq, want, got)
				}
			}
			if !sameBooks(straight, restarted) {
				t.Fatal("the books differ at the end")
			}
		})
	}
}
