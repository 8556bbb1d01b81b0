package journal

import "github.com/cockroachdb/pebble/v2"

// The journal's Pebble memory. The image is built without cgo, so Pebble's
// memtables and block cache are Go heap, and its defaults (4 MiB
// memtables, an 8 MiB cache) cost a controller 12 MiB before its first
// pod, plus the garbage collector's room above them; Pebble keeps two
// memtables' memory at all times (the one written to, and the last one
// flushed, for reuse). The journal appends in key order and reads mostly
// in order (replay, the outbox's tail), so neither pays for its size
// here: with 1 MiB memtables (up to eight queued for flush before writes
// wait: 8 MiB, as the defaults queue) and a 2 MiB cache, a 10,000-pod
// fleet's anonymous memory is ~3 MiB smaller than with 2 MiB memtables
// (and that 7.6 MiB smaller at its steady peak than with the defaults).
// Appends of a few records (BenchmarkAppend) lose ~5 %; a group commit
// over half a memtable (a relist's page of 500 pods, ~0.5 MiB) Pebble
// keeps as a memtable of its own, which it flushes at once: such batches
// are journaled at ~140k records/s, not ~230k (BenchmarkAppend's
// page512x1k_sync), still a 100,000-pod relist in under a second. Reading does not use the memtables. A checkpoint
// does not go through them (checkpoint_table.go): it once asked for
// larger ones.
const (
	memTableSize    = 1 << 20
	memTablesQueued = 8
	blockCacheSize  = 2 << 20
)

// tableBlockSize is the size of the blocks of the journal's tables, each
// compressed (Snappy) and read whole. A record shares most of its bytes
// with its neighbours (keys, kinds, a pod's namespace, labels, images),
// which Snappy finds only within a block, and Pebble's default of 4 KiB
// holds about four records. At 32 KiB a managed fleet's 1,000,000
// records take 253 MiB on disk instead of 480, so the retention defaults
// keep 14 days of a busy 10,000-pod fleet, not 10; and reading records
// in order, as every reader does, is ~1.17× faster (fewer blocks to
// fetch, decompress and cache). A lookup reads one 32 KiB block where it
// read 4, and the journal looks up a few keys at open and per checkpoint
// (BENCHMARKS.md §7, "Larger table blocks").
const tableBlockSize = 32 << 10

// pebbleOptions are the journal's Pebble options.
func pebbleOptions(opts Options) *pebble.Options {
	o := &pebble.Options{
		Logger:                      newPebbleLogger(opts.Logger),
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: memTablesQueued,
		CacheSize:                   blockCacheSize,
	}
	for i := range o.Levels {
		o.Levels[i].BlockSize = tableBlockSize
	}
	return o
}
