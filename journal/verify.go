package journal

import (
	"context"
	"fmt"
)

// Verify reads the whole log and checks every record's checksum and format
// version, that sequences run First, First+1... with no gap, that record 1
// has a zero Prev (or, in a pruned log, that the first record links to the
// checkpoint it was pruned to) and that every Prev is the Hash of the
// record before; and that every checkpoint is whole (every piece there,
// every checksum right) and names the hash of its record.
// It returns how many records passed and, on the first broken link, a
// *LinkError naming that record's sequence.
//
// NB: a record rewritten with a recomputed checksum passes its own checks;
// the chain then breaks at the record after it, which is where Verify
// reports it. Only the last record can be rewritten that way undetected,
// which is why the outbox also publishes each record's hash.
func (j *Journal) Verify(ctx context.Context) (count uint64, err error) {
	ckpts, err := j.checkCheckpoints()
	if err != nil {
		return 0, err
	}
	err = j.scan(ctx, j.First(), 0, func(r Record, _ []byte) error {
		if r.Seq == 1 && r.Prev != ([32]byte{}) {
			return &LinkError{Seq: 1, Err: fmt.Errorf("%w: first record has a non-zero prev hash", ErrBrokenChain)}
		}
		if h, ok := ckpts[r.Seq]; ok && h != r.Hash {
			return &LinkError{Seq: r.Seq, Err: fmt.Errorf("%w: the checkpoint at this record was taken from another record (hash %x, record's %x)", ErrBrokenChain, h[:6], r.Hash[:6])}
		}
		count++
		return nil
	})
	return count, err
}

// checkCheckpoints reads every checkpoint, the checksum of each of its
// pieces included, and returns the hash each names, by record.
func (j *Journal) checkCheckpoints() (map[uint64][32]byte, error) {
	j.rw.RLock()
	defer j.rw.RUnlock()
	if j.closed.Load() {
		return nil, ErrClosed
	}
	snap := j.db.NewSnapshot()
	defer snap.Close()
	ms, err := checkpointMetas(snap)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64][32]byte, len(ms))
	for _, m := range ms {
		if !m.OneValue {
			if err := readPieces(snap, m, func([]byte) error { return nil }); err != nil {
				return nil, err
			}
		}
		out[m.Seq] = m.Hash
	}
	return out, nil
}
