package journal_test

import (
	"bytes"
	"context"
	"reflect"
	"runtime"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// TestCheckpointOfBooksRoundTrip: a fleet's books written in pieces read
// back as the very bytes the CBOR library's core deterministic encoding
// makes of them (what every checkpoint held before pieces, and what the
// one-value format still read holds), and decode to equal books.
func TestCheckpointOfBooksRoundTrip(t *testing.T) {
	books := fleetBooks(t, 3000)
	coreDet, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	want, err := coreDet.Marshal(books)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := journal.EncodeCheckpoint(books); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("EncodeCheckpoint: %d bytes, %v; the library's encoding is %d bytes, or different", len(got), err, len(want))
	}
	j, err := journal.Open(t.TempDir(), journal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	recs, err := j.Append(context.Background(), nil,
		journal.Entry{Kind: journal.KindTick, Key: "tick"}, journal.Entry{Kind: journal.KindTick, Key: "tick"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.SaveCheckpointOneValue(recs[0].Seq, books); err != nil {
		t.Fatal(err)
	}
	w, err := j.NewCheckpoint(recs[1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.Encode(books); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Commit(); err != nil || n != len(want) {
		t.Fatalf("Commit = %d, %v; want %d bytes", n, err, len(want))
	}
	for _, r := range recs {
		c, ok, err := j.LatestCheckpoint(r.Seq)
		if err != nil || !ok || c.Seq != r.Seq || !bytes.Equal(c.Data, want) {
			t.Fatalf("checkpoint %d: %d bytes, %v, %v; want the library's %d", r.Seq, len(c.Data), ok, err, len(want))
		}
		got := &projections.Books{}
		if err := journal.DecodeCheckpoint(c.Data, got); err != nil {
			t.Fatal(err)
		}
		// The states compared Detached: what their caches hold depends on
		// the order the pods were folded in.
		gs, bs := got.State.Detached(), books.State.Detached()
		if !reflect.DeepEqual(gs, bs) || !reflect.DeepEqual(got.Open, books.Open) || !reflect.DeepEqual(got.Rollouts, books.Rollouts) {
			t.Fatalf("checkpoint %d decodes to other books", r.Seq)
		}
	}
}

// TestCheckpointWriteAllocatesLessThanItsSize: writing a 10,000-pod
// fleet's checkpoint allocates less than the checkpoint's size, Pebble's
// own allocations included (its memtables and WAL blocks are on the Go
// heap when built without cgo, as the shipped binary is): the data is
// never held whole, let alone copied, on its way to the journal. (Encoded
// whole by the CBOR library and stored as one value, it allocated 16
// times its size: BenchmarkCheckpointWrite.) Measured on the second
// checkpoint, as the controller writes one a minute: the first also grows
// Pebble's memtables to their size.
func TestCheckpointWriteAllocatesLessThanItsSize(t *testing.T) {
	if testing.Short() {
		t.Skip("folds a 10,000-pod fleet")
	}
	books := fleetBooks(t, 10_000)
	j, err := journal.Open(t.TempDir(), journal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	write := func() (n int, alloc uint64) {
		recs, err := j.Append(context.Background(), nil, journal.Entry{Kind: journal.KindTick, Key: "tick"})
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w, err := j.NewCheckpoint(recs[0].Seq)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		if err := w.Encode(books); err != nil {
			t.Fatal(err)
		}
		if n, err = w.Commit(); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return n, after.TotalAlloc - before.TotalAlloc
	}
	write()
	n, alloc := write()
	t.Logf("a checkpoint of %.1f MiB allocated %.1f MiB (%.2f×)", float64(n)/(1<<20), float64(alloc)/(1<<20), float64(alloc)/float64(n))
	if alloc >= uint64(n) {
		t.Fatalf("writing a checkpoint of %d bytes allocated %d", n, alloc)
	}
}
