package journal

import (
	"context"
	"time"
)

// Retention bounds the log. The zero value keeps everything.
type Retention struct {
	// MaxAge: records older than this are pruned.
	MaxAge time.Duration
	// MaxBytes: while the log takes more disk than this, its oldest
	// records are pruned.
	MaxBytes uint64
}

// Retain prunes the log as r calls for, to the newest checkpoint that
// MaxAge or MaxBytes asks for and that is below floor (the first record
// something still needs), then thins the checkpoints. now is the clock
// MaxAge is measured against.
//
// Pruning goes checkpoint to checkpoint, so what stays is always a
// checkpoint and every record after it: replayable. Thinning keeps the
// newest two checkpoints (start-up uses the newest; the one before covers
// a crash while the newest is written) and, of the older ones, the first
// in each span of MaxAge/16 (an hour when only size is bounded): enough for
// retention to prune within a sixteenth of its bound, few enough that
// checkpoints take a bounded share of the disk.
func (j *Journal) Retain(ctx context.Context, r Retention, floor uint64, now time.Time) error {
	infos, err := j.Checkpoints()
	if err != nil {
		return err
	}
	var size uint64
	if r.MaxBytes > 0 {
		if size, err = j.LogBytes(); err != nil {
			return err
		}
	}
	var to uint64
	for _, ci := range infos {
		if ci.Seq >= floor {
			break
		}
		if r.MaxAge > 0 && now.Sub(ci.Time) > r.MaxAge {
			to = ci.Seq
		}
		if r.MaxBytes > 0 && size > r.MaxBytes && ci.Seq > to {
			// The oldest checkpoint that leaves the log within its bound,
			// or failing that the newest allowed. NB: what stays is
			// estimated, not what goes: Pebble estimates a range by whole
			// blocks, so the block a checkpoint's record falls in counts
			// as staying. Retention may then prune one checkpoint further
			// than it had to; it never stops short of the bound because
			// of a block it counted as freed (with 32 KiB blocks,
			// pebble.go, a small log is a block or two).
			kept, err := j.logBytesFrom(ci.Seq + 1)
			if err != nil {
				return err
			}
			to = ci.Seq
			if kept <= r.MaxBytes {
				size = 0
			}
		}
	}
	if to != 0 && to >= j.First() {
		if err := j.Prune(ctx, to); err != nil {
			return err
		}
	}
	return j.thin(r)
}

func (j *Journal) thin(r Retention) error {
	infos, err := j.Checkpoints()
	if err != nil {
		return err
	}
	span := time.Hour
	if r.MaxAge > 0 {
		span = max(r.MaxAge/16, time.Minute)
	}
	var lastKept time.Time
	for i, ci := range infos {
		if i >= len(infos)-2 || ci.Seq+1 == j.First() {
			continue // the newest two, and the one the log starts at
		}
		if lastKept.IsZero() || ci.Time.Sub(lastKept) >= span {
			lastKept = ci.Time
			continue
		}
		if err := j.deleteCheckpoint(ci.Seq); err != nil {
			return err
		}
	}
	return nil
}
