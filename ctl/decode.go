package ctl

import (
	"context"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// DecodeAhead hands the records read (read, from a Source or a journal)
// to add in order, decoded, until add says stop; it counts the records
// add had. One goroutine reads the records, checks their chain and
// decodes their bodies while add folds and plans on the caller's: on two
// cores replay takes about the longer of the two, not their sum. A read
// error is returned once add has had every record before it, as if read
// in one loop.
func DecodeAhead(ctx context.Context, read func(context.Context, func(journal.Record) error) error, add func(projections.Decoded) (bool, error)) (n uint64, stopped bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	const size = 256
	batches := make(chan []projections.Decoded, 8)
	var readErr error
	go func() {
		defer close(batches)
		batch := make([]projections.Decoded, 0, size)
		readErr = read(ctx, func(r journal.Record) error {
			batch = append(batch, projections.Decode(r))
			if len(batch) < size {
				return nil
			}
			select {
			case batches <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = make([]projections.Decoded, 0, size)
			return nil
		})
		if len(batch) > 0 {
			select {
			case batches <- batch:
			case <-ctx.Done():
			}
		}
	}()
	for batch := range batches {
		for _, d := range batch {
			n++
			var ok bool
			if ok, err = add(d); err != nil || !ok {
				cancel()
				for range batches { // until the reader has returned
				}
				return n, err == nil, err
			}
		}
	}
	return n, false, readErr
}
