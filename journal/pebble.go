package journal

import "github.com/cockroachdb/pebble/v2"

// The journal's Pebble memory. The image is built without cgo, so Pebble's
// memtables and block cache are Go heap, and its defaults (4 MiB
// memtables, an 8 MiB cache) cost a controller 12 MiB before its first
// pod, plus the garbage collector's room above them. The journal appends
// in key order and reads mostly in order (replay, the outbox's tail), so
// neither pays for its size here: with 2 MiB memtables (up to four queued
// for flush before writes wait: 8 MiB, as the defaults queue) and a 2 MiB
// cache, a 10,000-pod fleet's heap is 4.3 MiB smaller and its steady peak
// RSS 7.6 MiB, while appends (BenchmarkAppend), scans and folds (bench
// replay) keep their pace within noise. (1 MiB memtables saved 1.5 MiB
// more, but a checkpoint then allocated more than its size, new memtables
// faster than flushed ones could be reused:
// TestCheckpointWriteAllocatesLessThanItsSize.)
const (
	memTableSize    = 2 << 20
	memTablesQueued = 4
	blockCacheSize  = 2 << 20
)

// pebbleOptions are the journal's Pebble options.
func pebbleOptions(opts Options) *pebble.Options {
	return &pebble.Options{
		Logger:                      newPebbleLogger(opts.Logger),
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: memTablesQueued,
		CacheSize:                   blockCacheSize,
	}
}
