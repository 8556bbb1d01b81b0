package main

import (
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestPlannerWakesOnTheWorldOnly: records from the world (an object seen,
// an action's outcome) wake the planner; its own records (the Tick it
// appends to plan, its intents) do not, so an idle controller does not
// plan, and tick, in a loop.
func TestPlannerWakesOnTheWorldOnly(t *testing.T) {
	b := projections.NewBooks()
	c := &controller{books: b, state: b.State, foldedCh: make(chan struct{}), dirty: make(chan struct{}, 1)}
	at := time.Unix(1_800_000_000, 0)
	body := func(v any) []byte {
		b, err := journal.EncodeBody(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fact := journal.ActionFact{Key: "gate/ns/p/u/r", Kind: "gate", Pod: "ns/p", UID: "u", Revision: "r"}
	for i, tc := range []struct {
		rec   journal.Record
		wakes bool
	}{
		{journal.Record{Kind: journal.KindTick, Key: "tick", Body: body(journal.TickFact{Reason: "plan"})}, false},
		{journal.Record{Kind: journal.KindActionIntended, Key: fact.Key, Body: body(fact)}, false},
		{journal.Record{Kind: journal.KindActionSucceeded, Key: fact.Key, Body: body(fact)}, true},
		{journal.Record{Kind: journal.KindObserved, Key: "pods/ns/p", Body: body(journal.Observed{Resource: "pods", Namespace: "ns", Name: "p", UID: "u", ResourceVersion: "1"})}, true},
	} {
		tc.rec.Seq, tc.rec.Time = uint64(i+1), at
		if err := c.fold(tc.rec); err != nil {
			t.Fatal(err)
		}
		woke := false
		select {
		case <-c.dirty:
			woke = true
		default:
		}
		if woke != tc.wakes {
			t.Errorf("record %d (%v): woke the planner %v, want %v", i+1, tc.rec.Kind, woke, tc.wakes)
		}
	}
}
