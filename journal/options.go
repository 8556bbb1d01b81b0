package journal

import (
	"fmt"
	"log/slog"
	"time"
)

// DefaultMaxBatch is the group-commit cap used when Options.MaxBatch is 0.
// Past a few hundred records per fsync the gain flattens (GROUND.md: synced
// batches of 64 → 182k/s, of 1024 → 534k/s) while the latency of every
// caller in the batch grows with it.
const DefaultMaxBatch = 1024

// Options configure Open. The zero value is ready to use.
type Options struct {
	// MaxBatch caps how many records one group commit gathers from
	// concurrent Append calls. It is a soft cap: an Append is never split,
	// so a single call with more entries is committed whole, alone.
	// 0 means DefaultMaxBatch; negative is an error.
	MaxBatch int
	// NoSync commits without fsync. For benchmarks only: an acknowledged
	// record can then be lost in a crash, which breaks every promise the
	// journal makes to its callers.
	NoSync bool
	// Now is the clock that stamps records; nil means time.Now. Records'
	// times never decrease along the log whatever Now returns.
	Now func() time.Time
	// Logger receives Pebble's messages (routine ones at debug level).
	// nil means slog.Default().
	Logger *slog.Logger
	// MinFreeBytes is the free space the journal's filesystem must keep:
	// below it, commits wait (see Append) instead of letting Pebble meet a
	// full disk, which it treats as fatal. 0 means DefaultMinFreeBytes.
	MinFreeBytes uint64
	// ID is the identity a new journal takes instead of a random one: a
	// journal restored from another's stream continues that one (Import).
	// It is ignored when the journal exists.
	ID string
}

// DefaultMinFreeBytes leaves Pebble room for the flushes and compactions
// already under way when commits stop, and a restart room to open.
const DefaultMinFreeBytes = 64 << 20

func (o Options) validate() error {
	if o.MaxBatch < 0 {
		return fmt.Errorf("journal: Options.MaxBatch is %d, must be >= 0", o.MaxBatch)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	return o
}
