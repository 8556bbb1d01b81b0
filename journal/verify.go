package journal

import (
	"context"
	"fmt"
)

// Verify reads the whole log and checks every record's checksum and format
// version, that sequences run 1, 2, 3... with no gap, that record 1 has a
// zero Prev and that every Prev is the Hash of the record before. It
// returns how many records passed and, on the first broken link, a
// *LinkError naming that record's sequence.
//
// NB: a record rewritten with a recomputed checksum passes its own checks;
// the chain then breaks at the record after it, which is where Verify
// reports it. Only the last record can be rewritten that way undetected,
// which is why the outbox also publishes each record's hash.
func (j *Journal) Verify(ctx context.Context) (count uint64, err error) {
	err = j.scan(ctx, 1, 0, func(r Record, _ []byte) error {
		if r.Seq == 1 && r.Prev != ([32]byte{}) {
			return &LinkError{Seq: 1, Err: fmt.Errorf("%w: first record has a non-zero prev hash", ErrBrokenChain)}
		}
		count++
		return nil
	})
	return count, err
}
