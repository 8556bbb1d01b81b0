package actuator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
)

// Intend journals the intents of a whole plan in one append, before any of
// them is carried out. Replay depends on it: a plan's actions are all on
// record against the sequence they were derived from, whatever order the
// workers then run them in. Returns one intent fact per action and the
// sequence of the last intent.
func (a *Actuator) Intend(ctx context.Context, acts []planner.Action, planSeq uint64) ([]journal.ActionFact, uint64, error) {
	facts := make([]journal.ActionFact, len(acts))
	entries := make([]journal.Entry, len(acts))
	for i, act := range acts {
		f := journal.ActionFact{
			Key: act.Key(), Kind: string(act.Kind), Rollout: act.Rollout, Pod: act.Pod,
			UID: act.UID, Revision: act.Revision, PlanSeq: planSeq, Attempt: 1,
		}
		body, err := journal.EncodeBody(act)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %s: %w", ErrJournal, f.Key, err)
		}
		f.Action = body
		fb, err := journal.EncodeBody(f)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %s: %w", ErrJournal, f.Key, err)
		}
		facts[i], entries[i] = f, journal.Entry{Kind: journal.KindActionIntended, Key: f.Key, Body: fb}
	}
	if len(entries) == 0 {
		return nil, 0, nil
	}
	recs, err := a.journal.Append(ctx, nil, entries...)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: intents of plan at %d: %w", ErrJournal, planSeq, err)
	}
	return facts, recs[len(recs)-1].Seq, nil
}

// Execute carries out an action whose intent Intend journaled and journals
// its outcome; see Do for the error contract.
func (a *Actuator) Execute(ctx context.Context, act planner.Action, intent journal.ActionFact) (journal.ActionFact, error) {
	start := time.Now()
	rv, callErr := a.perform(ctx, act)
	a.m.observe(act.Kind, time.Since(start), callErr)
	out := intent
	out.Action = nil
	kind := journal.KindActionSucceeded
	if callErr != nil {
		kind = journal.KindActionFailed
		out.Class, out.Error = Classify(callErr), callErr.Error()
	} else {
		out.ResultVersion = rv
	}
	// NB: the write happened (or failed) whatever ctx says now.
	if err := a.append(context.WithoutCancel(ctx), kind, out.Key, out); err != nil {
		return out, errors.Join(callErr, err)
	}
	if callErr != nil {
		return out, fmt.Errorf("actuator: %s: %w", act.Kind, callErr)
	}
	return out, nil
}
