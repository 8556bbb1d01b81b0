package journal

import (
	"context"
	"fmt"
)

// Verify reads the whole log and checks every record's checksum and format
// version, that sequences run First, First+1... with no gap, that record 1
// has a zero Prev (or, in a pruned log, that the first record links to the
// checkpoint it was pruned to) and that every Prev is the Hash of the
// record before; and that every checkpoint names the hash of its record.
// It returns how many records passed and, on the first broken link, a
// *LinkError naming that record's sequence.
//
// NB: a record rewritten with a recomputed checksum passes its own checks;
// the chain then breaks at the record after it, which is where Verify
// reports it. Only the last record can be rewritten that way undetected,
// which is why the outbox also publishes each record's hash.
func (j *Journal) Verify(ctx context.Context) (count uint64, err error) {
	ckpts := map[uint64][32]byte{}
	infos, err := j.Checkpoints()
	if err != nil {
		return 0, err
	}
	for _, ci := range infos {
		c, ok, err := j.LatestCheckpoint(ci.Seq)
		if err != nil || !ok {
			return 0, fmt.Errorf("journal: checkpoint %d: %w", ci.Seq, err)
		}
		ckpts[c.Seq] = c.Hash
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
