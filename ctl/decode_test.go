package ctl

import (
	"context"
	"errors"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// ticks reads n Tick records, then fails with end (nil: none).
func ticks(n int, end error) func(context.Context, func(journal.Record) error) error {
	return func(ctx context.Context, fn func(journal.Record) error) error {
		for i := 1; i <= n; i++ {
			if err := fn(journal.Record{Seq: uint64(i), Kind: journal.KindTick, Time: time.Unix(int64(i), 0)}); err != nil {
				return err
			}
		}
		return end
	}
}

// TestDecodeAhead: add has the records in order, up to where it stops,
// and a read error only once it has had every record before it.
func TestDecodeAhead(t *testing.T) {
	ctx := context.Background()
	var seen []uint64
	collect := func(stopAt uint64, fail error) func(projections.Decoded) (bool, error) {
		seen = nil
		return func(d projections.Decoded) (bool, error) {
			seen = append(seen, d.Record.Seq)
			if d.Record.Seq == stopAt {
				return false, fail
			}
			return true, nil
		}
	}
	inOrder := func(want int) {
		t.Helper()
		if len(seen) != want {
			t.Fatalf("add had %d records, want %d", len(seen), want)
		}
		for i, s := range seen {
			if s != uint64(i+1) {
				t.Fatalf("record %d came %d-th", s, i+1)
			}
		}
	}

	n, stopped, err := DecodeAhead(ctx, ticks(1000, nil), collect(0, nil))
	if n != 1000 || stopped || err != nil {
		t.Fatalf("all: n %d, stopped %v, err %v", n, stopped, err)
	}
	inOrder(1000)

	n, stopped, err = DecodeAhead(ctx, ticks(5000, nil), collect(700, nil))
	if n != 700 || !stopped || err != nil {
		t.Fatalf("stop at 700: n %d, stopped %v, err %v", n, stopped, err)
	}
	inOrder(700)

	broken := errors.New("chain broken at record 901")
	n, stopped, err = DecodeAhead(ctx, ticks(900, broken), collect(0, nil))
	if n != 900 || stopped || !errors.Is(err, broken) {
		t.Fatalf("read error after 900: n %d, stopped %v, err %v", n, stopped, err)
	}
	inOrder(900)

	// A divergence before the read error is what replay reports.
	n, stopped, err = DecodeAhead(ctx, ticks(900, broken), collect(300, nil))
	if n != 300 || !stopped || err != nil {
		t.Fatalf("stop at 300 before a read error: n %d, stopped %v, err %v", n, stopped, err)
	}

	failed := errors.New("fold failed")
	n, stopped, err = DecodeAhead(ctx, ticks(900, nil), collect(257, failed))
	if n != 257 || stopped || !errors.Is(err, failed) {
		t.Fatalf("add error at 257: n %d, stopped %v, err %v", n, stopped, err)
	}
	inOrder(257)
}
