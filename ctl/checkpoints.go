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
	// journal starts at record 1.
	From uint64
	// Checked are the checkpoints after From that hold the fold of the
	// records before them; Reencoded those among them written in an
	// older encoding (equal once decoded and encoded again); Rewritten
	// those that did not, written again from the fold (Rewrite).
	Checked, Reencoded, Rewritten []uint64
}

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
// for byte as the controller writes it. A checkpoint is where a
// restarted controller, `status` and the trace loop start, and Verify
// only checks that it is whole and anchored to its record: one that held
// another state would steer every later decision, with the chain intact.
// With rewrite, a checkpoint that does not hold the fold is written again
// from it (the records are the truth; a checkpoint is derived) and the
// audit goes on; without, the first is a *CheckpointError.
//
// The fold stops at the last checkpoint. Run it on a journal no
// controller is writing: one that prunes or checkpoints meanwhile makes
// the audit fail, not pass.
func AuditCheckpoints(ctx context.Context, j *journal.Journal, rewrite bool) (CheckpointAudit, error) {
	var a CheckpointAudit
	infos, err := j.Checkpoints()
	if err != nil || len(infos) == 0 {
		return a, err
	}
	books := projections.NewBooks()
	if first := j.First(); first > 1 {
		c, ok, err := j.LatestCheckpoint(first - 1)
		if err != nil {
			return a, err
		}
		if !ok || c.Seq != first-1 {
			return a, fmt.Errorf("the journal starts at record %d and has no checkpoint at record %d to fold from", first, first-1)
		}
		if err := journal.DecodeCheckpoint(c.Data, books); err != nil {
			return a, fmt.Errorf("the checkpoint at record %d, where the journal starts, does not load: %w", c.Seq, err)
		}
		if books.State.Seq != c.Seq {
			return a, fmt.Errorf("the checkpoint at record %d, where the journal starts, holds the state at record %d", c.Seq, books.State.Seq)
		}
		a.From = c.Seq
	}
	var due []uint64
	for _, c := range infos {
		if c.Seq > a.From {
			due = append(due, c.Seq)
		}
	}
	if len(due) == 0 {
		return a, nil
	}
	read := func(ctx context.Context, fn func(journal.Record) error) error { return j.Read(ctx, a.From+1, fn) }
	_, _, err = DecodeAhead(ctx, read, func(d projections.Decoded) (bool, error) {
		if err := books.ApplyDecoded(d); err != nil {
			return false, fmt.Errorf("record %d does not fold: %w", d.Record.Seq, err)
		}
		if d.Record.Seq < due[0] {
			return true, nil
		}
		if err := a.check(j, books, due[0], rewrite); err != nil {
			return false, err
		}
		due = due[1:]
		return len(due) > 0, nil
	})
	if err == nil && len(due) > 0 {
		err = fmt.Errorf("the checkpoint at record %d is past the journal's last record", due[0])
	}
	return a, err
}

// check compares the checkpoint at seq with books, the fold up to seq.
func (a *CheckpointAudit) check(j *journal.Journal, books *projections.Books, seq uint64, rewrite bool) error {
	c, ok, err := j.LatestCheckpoint(seq)
	if err != nil {
		return err
	}
	if !ok || c.Seq != seq {
		return fmt.Errorf("the checkpoint at record %d went while it was audited: is a controller running on this journal?", seq)
	}
	fold, err := journal.EncodeCheckpoint(books)
	if err != nil {
		return err
	}
	if bytes.Equal(fold, c.Data) {
		a.Checked = append(a.Checked, seq)
		return nil
	}
	var diffs []string
	stored := projections.NewBooks()
	if err := journal.DecodeCheckpoint(c.Data, stored); err != nil {
		diffs = []string{err.Error()}
	} else if again, err := journal.EncodeCheckpoint(stored); err != nil {
		return err
	} else if bytes.Equal(again, fold) {
		a.Checked = append(a.Checked, seq)
		a.Reencoded = append(a.Reencoded, seq)
		return nil
	} else if diffs = diffBooks(books, stored, 8); len(diffs) == 0 {
		diffs = []string{"their encodings differ"}
	}
	if !rewrite {
		return &CheckpointError{Seq: seq, From: a.From, Diffs: diffs}
	}
	if err := j.SaveCheckpoint(seq, fold); err != nil {
		return errors.Join(&CheckpointError{Seq: seq, From: a.From, Diffs: diffs}, fmt.Errorf("not rewritten: %w", err))
	}
	a.Rewritten = append(a.Rewritten, seq)
	return nil
}
