package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// CheckpointAudit is what AuditCheckpoints found.
type CheckpointAudit struct {
	// From is the checkpoint the fold started from: a pruned journal's,
	// taken on trust, since the records before it are gone; 0 when the
	// fold started at record 1.
	From uint64
	// Earlier names where records 1.. up to a pruned journal's first
	// checkpoint were read from (AuditOptions.Earlier), when they were.
	Earlier string
	// EarlierFrom is the checkpoint beside Earlier, a stream whose
	// limits removed its start, that its records were folded from (taken
	// on trust); 0 when they were folded from record 1.
	EarlierFrom uint64
	// Records are the records verified (AuditOptions.Chain), and Verified
	// says the whole journal was: the read went to its end.
	Records  uint64
	Verified bool
	// Checked are the checkpoints that hold the fold of the records
	// before them; Reencoded those among them written in an older
	// encoding (equal once decoded and encoded again); Rewritten those
	// that did not, written again from the fold (AuditOptions.Rewrite).
	Checked, Reencoded, Rewritten []uint64
}

// AuditOptions say how AuditCheckpoints goes.
type AuditOptions struct {
	// Rewrite writes a checkpoint that does not hold the fold again from
	// it (the records are the truth; a checkpoint is derived) and goes
	// on; without it, the first is a *CheckpointError.
	Rewrite bool
	// Earlier, when set, reads the journal's records from record 1 (its
	// NATS stream, an export): the checkpoint a pruned journal starts at
	// is then checked against the fold of the records pruned before it,
	// not taken on trust.
	Earlier *Source
	// Chain verifies the journal in the same read (Journal.VerifyEach):
	// every record to the end of the log, the fold stopping at the last
	// checkpoint, so that verify reads the records once, not twice. A
	// broken chain is a *ChainError, and comes before any checkpoint's
	// error, as when Verify ran first. Not with Rewrite: a checkpoint is
	// rewritten only from a journal verified whole.
	Chain bool
}

// ChainError: the journal does not verify (AuditOptions.Chain); Records
// passed before Err.
type ChainError struct {
	Records uint64
	Err     error
}

func (e *ChainError) Error() string { return e.Err.Error() }
func (e *ChainError) Unwrap() error { return e.Err }

// CheckpointError: the checkpoint at Seq does not hold the fold of the
// records after From up to it. Diffs names what differs.
type CheckpointError struct {
	Seq, From uint64
	Diffs     []string
}

func (e *CheckpointError) Error() string {
	return fmt.Sprintf("the checkpoint at record %d does not hold the fold of records %d..%d: %s", e.Seq, e.From+1, e.Seq, strings.Join(e.Diffs, "; "))
}

// AuditCheckpoints folds the journal's records and checks that every
// checkpoint holds the state the records before it fold to, encoded byte
// for byte as the controller writes it. A restarted controller starts
// from its latest checkpoint (and every reader of a pruned journal from
// its first), and Verify only checks that a checkpoint is whole and
// anchored to its record: one that held another state would steer every
// later decision, with the chain intact.
// A pruned journal's first checkpoint is where the fold starts, taken on
// trust, unless o.Earlier reads the records before it.
//
// The fold stops at the last checkpoint. Run it on a journal no
// controller is writing: one that prunes or checkpoints meanwhile makes
// the audit fail, not pass.
func AuditCheckpoints(ctx context.Context, j *journal.Journal, o AuditOptions) (CheckpointAudit, error) {
	var a CheckpointAudit
	if o.Chain && o.Rewrite {
		return a, errors.New("ctl: a checkpoint is rewritten only from a journal verified whole: Chain and Rewrite do not go together")
	}
	infos, err := j.Checkpoints()
	if err != nil {
		return a, err
	}
	if len(infos) == 0 {
		return a, a.verifyOnly(ctx, j, o)
	}
	books, err := a.startBooks(ctx, j, o)
	if err != nil {
		if verr := a.verifyOnly(ctx, j, o); verr != nil {
			return a, verr // the chain first, as when Verify ran first
		}
		return a, err
	}
	var due []uint64
	for _, c := range infos {
		if c.Seq >= j.First() {
			due = append(due, c.Seq)
		}
	}
	if len(due) == 0 {
		return a, a.verifyOnly(ctx, j, o)
	}
	from := books.State.Seq + 1
	read := func(ctx context.Context, fn func(journal.Record) error) error { return j.Read(ctx, from, fn) }
	var chainErr error
	if o.Chain {
		// from is the journal's first record (a pruned journal's fold
		// starts at its checkpoint), where VerifyEach starts.
		read = func(ctx context.Context, fn func(journal.Record) error) error {
			a.Records, chainErr = j.VerifyEach(ctx, fn)
			a.Verified = chainErr == nil
			return chainErr
		}
	}
	var wrong *CheckpointError // with Chain: the first, kept while the chain is verified to the end
	_, _, err = DecodeAhead(ctx, read, func(d projections.Decoded) (bool, error) {
		if len(due) == 0 || wrong != nil {
			return true, nil // past the last checkpoint: the chain is verified to the end
		}
		if err := books.ApplyDecoded(d); err != nil {
			return false, fmt.Errorf("record %d does not fold: %w", d.Record.Seq, err)
		}
		if d.Record.Seq < due[0] {
			return true, nil
		}
		c, ok, err := j.LatestCheckpoint(due[0])
		if err != nil {
			return false, err
		}
		if !ok || c.Seq != due[0] {
			return false, fmt.Errorf("the checkpoint at record %d went while it was audited: is a controller running on this journal?", due[0])
		}
		fold, ce, err := a.check(books, c)
		switch {
		case err != nil:
			return false, err
		case ce != nil && o.Chain:
			wrong = ce
			return true, nil
		case ce != nil && !o.Rewrite:
			return false, ce
		case ce != nil:
			if err := j.SaveCheckpoint(c.Seq, fold); err != nil {
				return false, errors.Join(ce, fmt.Errorf("not rewritten: %w", err))
			}
			a.Rewritten = append(a.Rewritten, c.Seq)
		}
		due = due[1:]
		return len(due) > 0 || o.Chain, nil
	})
	switch {
	case chainErr != nil && errors.Is(err, chainErr):
		return a, &ChainError{Records: a.Records, Err: chainErr}
	case err == nil && wrong != nil:
		return a, wrong
	case err == nil && len(due) > 0:
		err = fmt.Errorf("the checkpoint at record %d is past the journal's last record", due[0])
	}
	return a, err
}

// startBooks are the books the audit's fold starts from: empty at record
// 1, or a pruned journal's first checkpoint (checked against the records
// before it when o.Earlier reads them).
func (a *CheckpointAudit) startBooks(ctx context.Context, j *journal.Journal, o AuditOptions) (*projections.Books, error) {
	first := j.First()
	if first == 1 {
		return projections.NewBooks(), nil
	}
	c, ok, err := j.LatestCheckpoint(first - 1)
	if err != nil {
		return nil, err
	}
	if !ok || c.Seq != first-1 {
		return nil, fmt.Errorf("the journal starts at record %d and has no checkpoint at record %d to fold from", first, first-1)
	}
	if o.Earlier != nil {
		return a.foldEarlier(ctx, *o.Earlier, c)
	}
	books := projections.NewBooks()
	if err := loadStart(c.Data, c.Seq, books); err != nil {
		return nil, fmt.Errorf("the checkpoint at record %d, where the journal starts, does not load: %w", c.Seq, err)
	}
	a.From = c.Seq
	return books, nil
}

// verifyOnly verifies the chain, when o.Chain asks, where the audit's own
// read does not: no checkpoint to audit, or the fold cannot start.
func (a *CheckpointAudit) verifyOnly(ctx context.Context, j *journal.Journal, o AuditOptions) error {
	if !o.Chain {
		return nil
	}
	var err error
	if a.Records, err = j.Verify(ctx); err != nil {
		return &ChainError{Records: a.Records, Err: err}
	}
	a.Verified = true
	return nil
}

// foldEarlier folds the records src holds up to c, the checkpoint a
// pruned journal starts at, and checks c against them.
func (a *CheckpointAudit) foldEarlier(ctx context.Context, src Source, c journal.Checkpoint) (*projections.Books, error) {
	books := projections.NewBooks()
	var last journal.Record
	read := func(ctx context.Context, fn func(journal.Record) error) error {
		// A stream whose limits removed its start is read from a
		// checkpoint beside it.
		return src.ReadFrom(ctx, func(b *projections.Books) error {
			if b.State.Seq >= c.Seq {
				return fmt.Errorf("%s starts after its checkpoint at record %d (its limits removed the records before), not before record %d, where the journal starts: it holds no records to check the journal's first checkpoint against",
					src.Describe(), b.State.Seq, c.Seq+1)
			}
			books, a.EarlierFrom = b, b.State.Seq
			return nil
		}, fn)
	}
	_, _, err := DecodeAhead(ctx, read, func(d projections.Decoded) (bool, error) {
		if err := books.ApplyDecoded(d); err != nil {
			return false, fmt.Errorf("%s: record %d does not fold: %w", src.Describe(), d.Record.Seq, err)
		}
		last = d.Record
		return last.Seq < c.Seq, nil
	})
	if err != nil {
		return nil, err
	}
	if last.Seq != c.Seq {
		return nil, fmt.Errorf("%s ends at record %d, before the checkpoint at record %d the journal starts at", src.Describe(), last.Seq, c.Seq)
	}
	if last.Hash != c.Hash {
		return nil, fmt.Errorf("%s's record %d is not the record the journal's first checkpoint is anchored to: is it this journal's?", src.Describe(), c.Seq)
	}
	a.Earlier = src.Describe()
	// One that differs is not rewritten: its records are pruned here.
	if _, ce, err := a.check(books, c); err != nil {
		return nil, err
	} else if ce != nil {
		return nil, ce
	}
	return books, nil
}

// check compares c with books, the fold up to c.Seq, and counts it
// checked when they are equal; else it returns what differs and the
// fold's encoding, for a rewrite.
func (a *CheckpointAudit) check(books *projections.Books, c journal.Checkpoint) (fold []byte, ce *CheckpointError, err error) {
	fold, err = journal.EncodeCheckpoint(books)
	if err != nil {
		return nil, nil, err
	}
	if bytes.Equal(fold, c.Data) {
		a.Checked = append(a.Checked, c.Seq)
		return fold, nil, nil
	}
	var diffs []string
	stored := projections.NewBooks()
	if err := journal.DecodeCheckpoint(c.Data, stored); err != nil {
		diffs = []string{err.Error()}
	} else if again, err := journal.EncodeCheckpoint(stored); err != nil {
		return nil, nil, err
	} else if bytes.Equal(again, fold) {
		a.Checked = append(a.Checked, c.Seq)
		a.Reencoded = append(a.Reencoded, c.Seq)
		return fold, nil, nil
	} else if diffs = diffBooks(books, stored, 8); len(diffs) == 0 {
		diffs = []string{"their encodings differ"}
	}
	return fold, &CheckpointError{Seq: c.Seq, From: a.From, Diffs: diffs}, nil
}
