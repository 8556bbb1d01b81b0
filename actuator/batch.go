package actuator

import (
	"context"
	"fmt"

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
		f, err := intentFact(act, planSeq, 1)
		if err != nil {
			return nil, 0, err
		}
		journaled := f
		journaled.PlanActions = len(acts) // on the intent only, not its outcome
		fb, err := journal.EncodeBody(journaled)
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
	return a.finish(ctx, act, intent)
}
