package journal_test

import (
	"context"
	"flag"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

var benchPods = flag.Int("checkpoint-pods", 10_000, "pods in the fleet whose checkpoint BenchmarkCheckpointWrite and BenchmarkCheckpointLoad write and read")

// checkpointWriters are the ways a checkpoint of books can be written:
// as the controller did until 2026-12-04 (the baseline) and as it does
// now. Each returns the data's size and how long the controller holds
// its fold's lock for it: encoding, then, and encoding into the journal
// piece by piece, now.
var checkpointWriters = []struct {
	name string
	save func(j *journal.Journal, seq uint64, books *projections.Books) (int, time.Duration, error)
}{
	{"one_value", func(j *journal.Journal, seq uint64, books *projections.Books) (int, time.Duration, error) {
		return j.SaveCheckpointOneValue(seq, books)
	}},
	{"pieces", func(j *journal.Journal, seq uint64, books *projections.Books) (int, time.Duration, error) {
		start := time.Now()
		w, err := j.NewCheckpoint(seq)
		if err != nil {
			return 0, 0, err
		}
		defer w.Abort()
		if err := w.Encode(books); err != nil {
			return 0, 0, err
		}
		held := time.Since(start)
		n, err := w.Commit()
		return n, held, err
	}},
}

// BenchmarkCheckpointWrite writes the checkpoint of a 10,000-pod fleet's
// books (fleetBooks; -checkpoint-pods for another size), as the controller does once a minute, into a
// journal on disk, and reports per checkpoint: the data's size
// (encoded-MiB), the bytes allocated (B/op, and alloc/encoded, their
// ratio to the size), and how far the heap rose above where it stood
// before the write, at the default GOGC (peak-heap-MiB) and at GOGC=5
// (peak-live-MiB, one extra write: the collector then runs every few MiB,
// so what is left is close to what the write held live at its peak);
// and how long of it the controller holds its fold's lock (locked-ms).
//
//	CGO_ENABLED=0 go test -run '^$' -bench CheckpointWrite -benchtime 5x ./journal/
//
// CGO_ENABLED=0 as the shipped binary is built: Pebble's memtables and
// block cache are then on the Go heap, and counted.
func BenchmarkCheckpointWrite(b *testing.B) {
	books := fleetBooks(b, *benchPods)
	for _, w := range checkpointWriters {
		b.Run(w.name, func(b *testing.B) {
			j, err := journal.Open(b.TempDir(), journal.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			ctx := context.Background()
			next := func() uint64 {
				recs, err := j.Append(ctx, nil, journal.Entry{Kind: journal.KindTick, Key: "tick"})
				if err != nil {
					b.Fatal(err)
				}
				return recs[0].Seq
			}
			var size int
			var peak uint64
			var locked time.Duration
			write := func() uint64 {
				seq := next()
				// Twice: what sync.Pools hold (the CBOR library's
				// encode buffers) is dropped at the second collection,
				// as in the controller, which collects many times in
				// the minute between two checkpoints.
				runtime.GC()
				runtime.GC()
				b.StartTimer()
				p := heapPeak(func() {
					var held time.Duration
					if size, held, err = w.save(j, seq, books); err != nil {
						b.Fatal(err)
					}
					locked += held
				})
				b.StopTimer()
				return p
			}
			b.StopTimer()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := 0; i < b.N; i++ {
				peak = max(peak, write())
			}
			runtime.ReadMemStats(&after)
			lockedMs := float64(locked.Milliseconds()) / float64(b.N)
			old := debug.SetGCPercent(5)
			live := write()
			debug.SetGCPercent(old)
			alloc := float64(after.TotalAlloc-before.TotalAlloc) / float64(b.N)
			b.ReportAllocs()
			b.ReportMetric(float64(size)/(1<<20), "encoded-MiB")
			b.ReportMetric(alloc/float64(size), "alloc/encoded")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(live)/(1<<20), "peak-live-MiB")
			b.ReportMetric(lockedMs, "locked-ms")
		})
	}
}

// BenchmarkCheckpointLoad reads the checkpoint of a 10,000-pod fleet, as
// a starting controller does (LatestCheckpoint; decoding it into books is
// the same whatever the format, and not timed), written in each format,
// and reports what reading it allocates against its size.
//
//	CGO_ENABLED=0 go test -run '^$' -bench CheckpointLoad -benchtime 5x ./journal/
func BenchmarkCheckpointLoad(b *testing.B) {
	books := fleetBooks(b, *benchPods)
	for _, w := range checkpointWriters {
		b.Run(w.name, func(b *testing.B) {
			j, err := journal.Open(b.TempDir(), journal.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			recs, err := j.Append(context.Background(), nil, journal.Entry{Kind: journal.KindTick, Key: "tick"})
			if err != nil {
				b.Fatal(err)
			}
			size, _, err := w.save(j, recs[0].Seq, books)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for i := 0; i < b.N; i++ {
				c, ok, err := j.LatestCheckpoint(0)
				if err != nil || !ok || len(c.Data) != size {
					b.Fatalf("read %d bytes of %d: %v %v", len(c.Data), size, ok, err)
				}
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(size), "alloc/encoded")
		})
	}
}

// heapPeak runs fn and returns how far the heap's object bytes (live and
// not yet swept: what the collector's goal and the resident set follow)
// rose above where they stood before, sampled every 200 µs.
func heapPeak(fn func()) uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	stop, done := make(chan struct{}), make(chan uint64)
	go func() {
		top := base
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- top
				return
			case <-t.C:
				top = max(top, read())
			}
		}
	}()
	fn()
	close(stop)
	top := max(<-done, read())
	return top - base
}
