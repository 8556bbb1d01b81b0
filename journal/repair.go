package journal

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

// Truncate removes every record after sequence after from the journal in
// dir, which no process may have open: the repair for a record that fails
// Verify (truncate after the last good one). It also removes the
// checkpoints past after (heads and pieces), and the cursors written with
// a removed record (a watch then relists instead of resuming past what the
// journal lost). It returns how many records it removed.
//
// What the removed records said is lost to this journal; a NATS stream
// that received them still holds them, and Import refills the journal
// from it (`rollbook journal restore`), so the chain continues unchanged.
func Truncate(dir string, after uint64, opts Options) (uint64, error) {
	// NB: not Open, which refuses a journal whose last record is the
	// broken one; only keys are read here.
	if _, err := os.Stat(dir); err != nil {
		return 0, fmt.Errorf("journal: no journal at %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, pebbleOptions(opts.withDefaults()))
	if err != nil {
		return 0, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: logStart, UpperBound: logEnd})
	if err != nil {
		return 0, err
	}
	var last uint64
	if it.Last() {
		last, _ = seqOfKey(it.Key())
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if after >= last {
		return 0, nil
	}
	j := &Journal{db: db}
	if err := j.loadStart(); err != nil {
		return 0, err
	}
	if first := j.start.First; after+1 < first {
		return 0, fmt.Errorf("journal: truncate after %d: the journal starts at %d (pruned); the checkpoint at %d must stay", after, first, first-1)
	}
	b := db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(logKey(after+1), logEnd, nil); err != nil {
		return 0, err
	}
	if err := b.DeleteRange(checkpointKey(after+1), checkpointEnd, nil); err != nil {
		return 0, err
	}
	if err := b.DeleteRange(piecesKey(after+1), piecesEnd, nil); err != nil {
		return 0, err
	}
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCursor}, UpperBound: []byte{prefixCursor + 1}})
	if err != nil {
		return 0, err
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return 0, err
		}
		p, err := unframe(v)
		if err != nil || len(p) < 8 || binary.BigEndian.Uint64(p) > after {
			if err := b.Delete(append([]byte(nil), it.Key()...), nil); err != nil {
				it.Close()
				return 0, err
			}
		}
	}
	if err := it.Close(); err != nil {
		return 0, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("journal: truncate after %d: %w", after, err)
	}
	return last - after, nil
}
