package journal

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
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
//
// The log is read in as many parts as there are CPUs, at once (see
// verify): every record carries the hash it links to, so each part checks
// its own links and the one into the next part without waiting for the
// others. Verify still reports what one pass would.
func (j *Journal) Verify(ctx context.Context) (count uint64, err error) {
	return j.verify(ctx, runtime.GOMAXPROCS(0), verifyMinPart, nil)
}

// VerifyEach is Verify in one pass that hands each record, once checked,
// to fn, in order: a reader that needs every record anyway (the audit of
// the checkpoints) verifies the journal in the same read. An error from fn
// ends it and is returned as it is, with the records before it counted.
func (j *Journal) VerifyEach(ctx context.Context, fn func(Record) error) (count uint64, err error) {
	return j.verify(ctx, 1, verifyMinPart, fn)
}

// verifyMinPart: a log shorter than two of these is read in one part, one
// pass, where starting goroutines and iterators would cost more than it
// saves.
const verifyMinPart = 1 << 15

// verify is Verify in at most parts parts of at least minPart records.
// Part k reads its records and the first record of part k+1, so the link
// between the two is checked once; the last part reads to the end of the
// log, records appended meanwhile included, as one pass does. each, when
// set, is given every record checked (one part only).
func (j *Journal) verify(ctx context.Context, parts int, minPart uint64, each func(Record) error) (count uint64, err error) {
	ckpts, err := j.checkCheckpoints(false)
	if err != nil {
		return 0, err
	}
	// The checkpoints' data (tens of megabytes at 10,000 pods) is read
	// beside the records; its error comes first, as it did before them.
	ckptErr := make(chan error, 1)
	go func() {
		_, err := j.checkCheckpoints(true)
		ckptErr <- err
	}()
	defer func() {
		if cerr := <-ckptErr; cerr != nil {
			count, err = 0, cerr
		}
	}()
	first := j.First()
	last, _ := j.Last()
	check := func(r Record) error {
		if r.Seq == 1 && r.Prev != ([32]byte{}) {
			return &LinkError{Seq: 1, Err: fmt.Errorf("%w: first record has a non-zero prev hash", ErrBrokenChain)}
		}
		if h, ok := ckpts[r.Seq]; ok && h != r.Hash {
			return &LinkError{Seq: r.Seq, Err: fmt.Errorf("%w: the checkpoint at this record was taken from another record (hash %x, record's %x)", ErrBrokenChain, h[:6], r.Hash[:6])}
		}
		return nil
	}
	n := uint64(0)
	if last >= first {
		n = last - first + 1
	}
	if parts < 1 || minPart == 0 || n < 2*minPart || each != nil {
		parts = 1 // one pass over the whole log
	} else {
		parts = int(min(uint64(parts), n/minPart))
	}
	type part struct {
		from, to uint64 // to: 0 for the last part, read to the end
		read     uint64 // records of its own that passed
		err      error
	}
	ps := make([]part, parts)
	for k := range ps {
		ps[k].from = first + uint64(k)*(n/uint64(parts))
		if k > 0 {
			ps[k-1].to = ps[k].from - 1
		}
	}
	var wg sync.WaitGroup
	for k := range ps {
		p := &ps[k]
		wg.Go(func() {
			end := uint64(0)
			if p.to != 0 {
				end = p.to + 1 // the next part's first record: the link into it
			}
			p.err = j.scan(ctx, p.from, end, func(r Record, _ []byte) error {
				if err := check(r); err != nil {
					return err
				}
				if each != nil {
					if err := each(r); err != nil {
						return err
					}
				}
				if p.to == 0 || r.Seq <= p.to {
					p.read++
				}
				return nil
			})
		})
	}
	wg.Wait()
	// The first error in the log's order is one pass's. A record missing
	// at the start of part k+1 is reported by both parts; part k+1 says
	// what one pass says ("next stored is ..."), so a later part wins a tie.
	at := func(k int) uint64 {
		if le, ok := errors.AsType[*LinkError](ps[k].err); ok {
			return le.Seq
		}
		return ps[k].from
	}
	worst := -1
	for k := range ps {
		if ps[k].err != nil && (worst < 0 || at(k) <= at(worst)) {
			worst = k
		}
	}
	if worst >= 0 {
		if _, ok := errors.AsType[*LinkError](ps[worst].err); ok {
			return at(worst) - first, ps[worst].err
		}
		count = 0
		for k := range worst {
			count += ps[k].read
		}
		return count + ps[worst].read, ps[worst].err
	}
	for _, p := range ps {
		count += p.read
	}
	return count, nil
}

// checkCheckpoints returns the hash each checkpoint names, by record;
// with pieces, it first reads every checkpoint's data, checking that each
// piece is there and its checksum right.
func (j *Journal) checkCheckpoints(pieces bool) (map[uint64][32]byte, error) {
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
		if pieces && !m.OneValue {
			if err := readPieces(snap, m, func([]byte) error { return nil }); err != nil {
				return nil, err
			}
		}
		out[m.Seq] = m.Hash
	}
	return out, nil
}
