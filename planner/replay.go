package planner

import (
	"errors"
	"fmt"
	"strings"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// Intent is a recorded ActionIntended, for replay.
type Intent struct {
	Seq     uint64 // the intent record's sequence
	PlanSeq uint64
	Action  Action
	// PlanActions is how many actions its plan had; 0 in journals
	// written before it was recorded.
	PlanActions int
}

// Divergence is the first place where today's planner, fed the recorded
// records, derives something other than what was recorded.
type Divergence struct {
	PlanSeq uint64
	// Recorded and Derived are the actions at the first differing
	// position; one is nil when a list is shorter.
	Recorded, Derived *Action
	RecordSeq         uint64 // the recorded intent's sequence (0 if none)
	Index             int
}

func (d *Divergence) String() string {
	show := func(a *Action) string {
		if a == nil {
			return "(nothing)"
		}
		return a.String()
	}
	return fmt.Sprintf("plan at record %d, action %d (intent record %d):\n  recorded: %s\n  derived:  %s",
		d.PlanSeq, d.Index, d.RecordSeq, show(d.Recorded), show(d.Derived))
}

// Replayer folds records through projections and, after each record a
// recorded plan was derived from, plans again and compares. It is pure:
// the caller feeds records (from a journal directory or a NATS stream).
type Replayer struct {
	state   *projections.State
	intents map[uint64][]Intent
	rollout string
	// From is the record the starting state was folded to (a
	// checkpoint's); 0 when replay starts at record 1.
	From uint64
	// Plans and Actions count what was compared. Cut counts plans whose
	// journaled intents are fewer than the plan's actions: a leader died
	// while publishing them to the stream another leader continued
	// (journal.ActionFact.PlanActions). Only those journaled are compared:
	// the rest never happened in this history.
	Plans, Actions, Cut int
	// Divergences holds every divergence when KeepGoing (what-if), else
	// at most the first.
	Divergences []Divergence
	KeepGoing   bool
	// Full plans with Plan, the definition, instead of the incremental
	// planner the controller runs; CrossCheck plans with both and fails
	// on the first plan where they differ (tests).
	Full, CrossCheck bool
	inc              *Incremental
}

// ErrIncrementalDiffers: the incremental planner derived other actions
// than Plan (Replayer.CrossCheck).
var ErrIncrementalDiffers = errors.New("planner: replay: the incremental planner differs from Plan")

// OnePass replays in one read of the journal. A plan's intents come after
// the record it was derived at, so OnePass folds each record only once it
// has read Lookahead records past it and is not inside a run of intents
// (the controller journals a plan's intents in one append: one unbroken
// run). An intent whose plan was already folded ends it with
// ErrLateIntent; the caller then replays in two passes
// (CollectIntents, then Replayer), which have no such limit.
type OnePass struct {
	*Replayer
	// Lookahead is how many records OnePass reads past a record before
	// folding it; 0 means DefaultLookahead.
	Lookahead int
	window    []projections.Decoded
	head      int
	lastKind  journal.Kind
	// base is the record the starting state was folded to (a
	// checkpoint's): plans at or before it are not replayed.
	base uint64
}

// DefaultLookahead bounds the records a recorded controller may have
// appended between planning and journaling the plan's intents (other
// appenders' records in the same group commits).
const DefaultLookahead = 1 << 14

// ErrLateIntent: an intent came later than OnePass's lookahead after the
// record its plan was derived at.
var ErrLateIntent = errors.New("planner: replay: an intent came after its plan's record was folded")

// NewOnePass is NewReplayerFrom for one pass: the intents are collected
// as the records come.
func NewOnePass(state *projections.State, rollout string) *OnePass {
	return &OnePass{Replayer: NewReplayerFrom(state, map[uint64][]Intent{}, rollout), base: state.Seq}
}

// Add takes the next record; see Replayer.Add for the result.
func (o *OnePass) Add(r journal.Record) (bool, error) { return o.AddDecoded(projections.Decode(r)) }

// AddDecoded is Add for a record projections.Decode read: a reader may
// decode the records ahead, on another core.
func (o *OnePass) AddDecoded(d projections.Decoded) (bool, error) {
	r := d.Record
	if r.Kind == journal.KindActionIntended {
		in, err := intentOf(d)
		if err != nil {
			return false, err
		}
		switch {
		case in.PlanSeq <= o.base:
			// Its plan came before the records replayed (a checkpoint's
			// books are where replay starts): nothing to compare.
		case in.PlanSeq <= o.state.Seq:
			return false, fmt.Errorf("%w (intent %d, plan at %d, folded to %d)", ErrLateIntent, r.Seq, in.PlanSeq, o.state.Seq)
		default:
			o.intents[in.PlanSeq] = append(o.intents[in.PlanSeq], in)
		}
	}
	o.window = append(o.window, d)
	o.lastKind = r.Kind
	look := o.Lookahead
	if look <= 0 {
		look = DefaultLookahead
	}
	for len(o.window)-o.head > look && o.lastKind != journal.KindActionIntended {
		ok, err := o.next()
		if err != nil || !ok {
			return ok, err
		}
	}
	return true, nil
}

// Finish folds the records still held, at the end of the journal.
func (o *OnePass) Finish() (bool, error) {
	for o.head < len(o.window) {
		ok, err := o.next()
		if err != nil || !ok {
			return ok, err
		}
	}
	return true, nil
}

func (o *OnePass) next() (bool, error) {
	d := o.window[o.head]
	o.window[o.head] = projections.Decoded{}
	o.head++
	if o.head == len(o.window) || o.head >= 1024 && o.head*2 >= len(o.window) {
		// Drop what was folded, keeping the window's storage.
		n := copy(o.window, o.window[o.head:])
		clear(o.window[n:])
		o.window, o.head = o.window[:n], 0
	}
	ok, err := o.Replayer.AddDecoded(d)
	delete(o.intents, d.Record.Seq)
	return ok, err
}

// CollectIntents is replay's first pass: the recorded intents by the
// sequence their plan was derived at.
func CollectIntents() (add func(journal.Record) error, result func() map[uint64][]Intent) {
	m := map[uint64][]Intent{}
	add = func(r journal.Record) error {
		if r.Kind != journal.KindActionIntended {
			return nil
		}
		in, err := decodeIntent(r)
		if err != nil {
			return err
		}
		m[in.PlanSeq] = append(m[in.PlanSeq], in)
		return nil
	}
	return add, func() map[uint64][]Intent { return m }
}

func decodeIntent(r journal.Record) (Intent, error) { return intentOf(projections.Decode(r)) }

// intentOf reads the intent of an intent record, decoded.
func intentOf(d projections.Decoded) (Intent, error) {
	r, f := d.Record, d.Action()
	if f == nil {
		return Intent{}, fmt.Errorf("planner: replay: record %d: %w", r.Seq, d.Err())
	}
	var a Action
	if err := journal.DecodeBody(f.Action, &a); err != nil {
		return Intent{}, fmt.Errorf("planner: replay: intent %d: %w", r.Seq, err)
	}
	return Intent{Seq: r.Seq, PlanSeq: f.PlanSeq, Action: a, PlanActions: f.PlanActions}, nil
}

// NewReplayer replays the given intents; rollout ("ns/name") limits the
// comparison to one rollout's actions ("" for all).
func NewReplayer(intents map[uint64][]Intent, rollout string) *Replayer {
	return NewReplayerFrom(projections.New(), intents, rollout)
}

// NewReplayerFrom is NewReplayer for a journal that starts after a
// checkpoint: state is the checkpoint's, and replay compares the plans
// derived after it.
func NewReplayerFrom(state *projections.State, intents map[uint64][]Intent, rollout string) *Replayer {
	state.Track()
	return &Replayer{state: state, intents: intents, rollout: rollout, inc: NewIncremental(), From: state.Seq}
}

// Add folds one record and, when a recorded plan was derived right after
// it, compares. It returns false once a divergence is found (unless
// KeepGoing).
func (rp *Replayer) Add(r journal.Record) (bool, error) { return rp.AddDecoded(projections.Decode(r)) }

// AddDecoded is Add for a record projections.Decode read.
func (rp *Replayer) AddDecoded(d projections.Decoded) (bool, error) {
	r := d.Record
	if err := rp.state.ApplyDecoded(d); err != nil {
		return false, err
	}
	recorded, ok := rp.intents[r.Seq]
	if !ok {
		return true, nil
	}
	var derived []Action
	switch {
	case rp.Full:
		derived = Plan(rp.state).Actions
	default:
		res := rp.inc.Plan(rp.state, rp.state.TakeTouched())
		if rp.CrossCheck {
			if d := Difference(res, Plan(rp.state)); d != "" {
				return false, fmt.Errorf("%w at record %d (%d full plans, %d partial before it): %s", ErrIncrementalDiffers, r.Seq, rp.inc.Full, rp.inc.Partial, d)
			}
		}
		derived = res.Actions
	}
	rec, der := rp.filter(recorded), rp.filterActions(derived)
	rp.Plans++
	rp.Actions += len(rec)
	n := max(len(rec), len(der))
	if cut(recorded) {
		rp.Cut++
		n = len(rec)
	}
	for i := range n {
		var ra, da *Action
		var rs uint64
		if i < len(rec) {
			ra, rs = &rec[i].Action, rec[i].Seq
		}
		if i < len(der) {
			da = &der[i]
		}
		if ra != nil && da != nil && sameAs(ra, da) {
			continue
		}
		rp.Divergences = append(rp.Divergences, Divergence{PlanSeq: r.Seq, Recorded: ra, Derived: da, RecordSeq: rs, Index: i})
		if !rp.KeepGoing {
			return false, nil
		}
		break
	}
	return true, nil
}

// cut: the plan's journaled intents are fewer than its actions. The
// journaled ones are the plan's first: one append journals them in plan
// order, and a stream holds a prefix of a journal.
func cut(in []Intent) bool {
	return len(in) > 0 && len(in) < in[0].PlanActions
}

func (rp *Replayer) filter(in []Intent) []Intent {
	if rp.rollout == "" {
		return in
	}
	var out []Intent
	for _, i := range in {
		if i.Action.Rollout == rp.rollout {
			out = append(out, i)
		}
	}
	return out
}

func (rp *Replayer) filterActions(in []Action) []Action {
	if rp.rollout == "" {
		return in
	}
	var out []Action
	for _, a := range in {
		if a.Rollout == rp.rollout {
			out = append(out, a)
		}
	}
	return out
}

// sameAction compares the parts String does not show: the state
// annotation and the status written.
func sameAction(a, b Action) bool {
	if a.State != b.State || a.UID != b.UID || a.Message != b.Message {
		return false
	}
	if (a.Status == nil) != (b.Status == nil) {
		return false
	}
	if a.Status != nil && !(sameStatus(*a.Status, *b.Status, true) && a.Status.JournalSequence == b.Status.JournalSequence) {
		return false
	}
	return true
}

// PlanKinds counts the plans the incremental planner made in full and in
// part.
func (rp *Replayer) PlanKinds() (full, partial int) { return rp.inc.Full, rp.inc.Partial }

// Difference says where an incremental plan a differs from Plan's b, as
// replay compares them: the first action that is not the same, or the
// wake-up times; "" when they are the same plan. The controller's --cross-check-plans and replay's
// cross-check print it.
func Difference(a, b Result) string {
	show := func(as []Action, i int) string {
		if i >= len(as) {
			return "(nothing)"
		}
		return as[i].String()
	}
	for i := range max(len(a.Actions), len(b.Actions)) {
		if i < len(a.Actions) && i < len(b.Actions) {
			if sameAs(&a.Actions[i], &b.Actions[i]) {
				continue
			}
		}
		return fmt.Sprintf("action %d of %d/%d:\n  incremental: %s\n  full:        %s", i, len(a.Actions), len(b.Actions), show(a.Actions, i), show(b.Actions, i))
	}
	if a.WakeAt != b.WakeAt {
		return fmt.Sprintf("wake-up at %d, against %d", a.WakeAt, b.WakeAt)
	}
	return ""
}

// Summary is one line for the end of a replay.
func (rp *Replayer) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d plans, %d recorded actions compared", rp.Plans, rp.Actions)
	switch {
	case rp.Cut == 1:
		b.WriteString(", 1 plan cut short by a leader's death (its journaled intents compared)")
	case rp.Cut > 1:
		fmt.Fprintf(&b, ", %d plans cut short by a leader's death (their journaled intents compared)", rp.Cut)
	}
	if len(rp.Divergences) > 0 {
		fmt.Fprintf(&b, ", %d divergent plans", len(rp.Divergences))
	}
	return b.String()
}
