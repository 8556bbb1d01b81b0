package journal

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkAppend measures synced appends of ~200-byte records.
// batch1_sync is the baseline on its own: one writer, MaxBatch 1, so one
// fsync per record. The groupN_sync runs have N concurrent writers, one
// record per Append, with group commit; each also measures the baseline
// (one writer, so one record per fsync) on the same journal just before its
// timed run and reports x_batch1, its speed-up over it: the disk here is
// shared and its fsync time drifts by several times within a minute, so a
// ratio across separate runs would measure the neighbours. groupN_nosync
// shows the ceiling without fsync.
func BenchmarkAppend(b *testing.B) {
	b.Run("batch1_sync", func(b *testing.B) { benchAppend(b, 1, Options{MaxBatch: 1}) })
	b.Run("group16_sync", func(b *testing.B) { benchAppend(b, 16, Options{}) })
	b.Run("group64_sync", func(b *testing.B) { benchAppend(b, 64, Options{}) })
	b.Run("group64_nosync", func(b *testing.B) { benchAppend(b, 64, Options{NoSync: true}) })
	b.Run("page512x1k_sync", benchAppendPages)
}

// benchAppendPages appends as ingest journals a relist: pages of 512
// records of ~1 KB in one Append each, synced. A page is over half a
// memtable (journal/pebble.go), which Pebble keeps as a memtable of its
// own: what the journal's memtable size costs a relist shows here.
func benchAppendPages(b *testing.B) {
	j, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	body := make([]byte, 1000)
	page := make([]Entry, 512)
	for i := range page {
		page[i] = Entry{Kind: KindTick, Key: "tick", Body: body}
	}
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for n < b.N {
		k := min(len(page), b.N-n)
		if _, err := j.Append(ctx, nil, page[:k]...); err != nil {
			b.Fatal(err)
		}
		n += k
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

func benchAppend(b *testing.B, writers int, opts Options) {
	j, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	e := benchEntry(b)
	ctx := context.Background()

	var baseline float64
	if writers > 1 && !opts.NoSync {
		const n = 300
		start := time.Now()
		for i := 0; i < n; i++ {
			if _, err := j.Append(ctx, nil, e); err != nil {
				b.Fatal(err)
			}
		}
		baseline = n / time.Since(start).Seconds()
	}
	batches0 := j.batches.Load()

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := j.Append(ctx, nil, e); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "records/s")
	b.ReportMetric(float64(b.N)/float64(max(j.batches.Load()-batches0, 1)), "records/batch")
	if baseline > 0 {
		b.ReportMetric(baseline, "batch1_records/s")
		b.ReportMetric(rate/baseline, "x_batch1")
	}
}

// benchEntry is an Observed pod record of about 200 bytes stored.
func benchEntry(b testing.TB) Entry {
	e := entry(b, 12345)
	r := Record{Seq: 1, Time: time.Now(), Kind: e.Kind, Key: e.Key, Body: e.Body}
	v, _, err := encodeRecord(&r)
	if err != nil {
		b.Fatal(err)
	}
	if len(v) < 150 || len(v) > 300 {
		b.Fatalf("bench record is %d bytes stored; keep it near 200", len(v))
	}
	return e
}

// BenchmarkOutboxPublish measures the outbox draining b.N committed
// records into a JetStream file-store stream on an embedded server (in
// process, default non-SyncAlways store), from first publish to last ack.
func BenchmarkOutboxPublish(b *testing.B) {
	j, dir := openTemp(b, Options{NoSync: true})
	ctx := context.Background()
	e := benchEntry(b)
	batch := make([]Entry, 1000)
	for i := range batch {
		batch[i] = e
	}
	for n := 0; n < b.N; n += len(batch) {
		if _, err := j.Append(ctx, nil, batch[:min(len(batch), b.N-n)]...); err != nil {
			b.Fatal(err)
		}
	}
	s := startNATS(b, dir+"-nats")
	nc := connect(b, NATSConfig{Embedded: s})
	ob, err := NewOutbox(j, nc, OutboxOptions{Stream: jetstream.StreamConfig{Name: "BENCH"}, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	stop := runOutbox(b, ob)
	eventually(b, 5*time.Minute, "all records published", func() bool { return ob.Published() == uint64(b.N) })
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
