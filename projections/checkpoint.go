package projections

import (
	"strings"

	"rollbook.dev/rollbook/journal"
)

// Books is everything a controller folds from the journal, as of one
// record; saved as a checkpoint, it lets a restarted controller read only
// the records after that one, however old the journal is (DESIGN:
// checkpoints).
type Books struct {
	// State is the planner's view. What ingest and the outbox remember
	// of objects derives from it.
	State *State
	// Open holds the intents that have no outcome yet, by action key: a
	// process that dies leaves them to be abandoned by the next.
	Open map[string]OpenIntent
	// Rollouts is where each rollout object's records begin, by
	// "namespace/name": the trace loop starts at the earliest one still
	// running, so its spans are rebuilt whole.
	Rollouts map[string]RolloutOrigin
}

// OpenIntent is an intent with no outcome yet, and the record it is.
type OpenIntent struct {
	Seq  uint64
	Fact IntentFact
}

// IntentFact is what an open intent keeps of its record's fact: the
// fields of a journal.ActionFact an intent has, under the same keys, so
// that a checkpoint's open intents encode as they did when they held
// one, and an older one's decode. A controller holds an open intent for
// every action in flight (a tenth of a fleet under a rollout at
// maxUnavailable 10%): the outcome's fields (version, error, class,
// measurement) made each 80 bytes larger, and the encoded action, which
// what reads it (a restarted controller journaling the intent abandoned)
// drops, was never kept.
type IntentFact struct {
	Key         string `cbor:"1,keyasint"`
	Kind        string `cbor:"2,keyasint"`
	Rollout     string `cbor:"3,keyasint,omitempty"`
	Pod         string `cbor:"4,keyasint,omitempty"`
	UID         string `cbor:"5,keyasint,omitempty"`
	Revision    string `cbor:"6,keyasint,omitempty"`
	PlanSeq     uint64 `cbor:"8,keyasint,omitempty"`
	Attempt     int    `cbor:"12,keyasint,omitempty"`
	TraceParent string `cbor:"13,keyasint,omitempty"`
	PlanActions int    `cbor:"15,keyasint,omitempty"`
}

// intentOf is what an open intent keeps of f, an intent's fact.
func intentOf(f *journal.ActionFact) IntentFact {
	return IntentFact{Key: f.Key, Kind: f.Kind, Rollout: f.Rollout, Pod: f.Pod, UID: f.UID, Revision: f.Revision,
		PlanSeq: f.PlanSeq, Attempt: f.Attempt, TraceParent: f.TraceParent, PlanActions: f.PlanActions}
}

// ActionFact is the intent's fact as its record held it, but for its
// encoded action.
func (f IntentFact) ActionFact() journal.ActionFact {
	return journal.ActionFact{Key: f.Key, Kind: f.Kind, Rollout: f.Rollout, Pod: f.Pod, UID: f.UID, Revision: f.Revision,
		PlanSeq: f.PlanSeq, Attempt: f.Attempt, TraceParent: f.TraceParent, PlanActions: f.PlanActions}
}

// RolloutOrigin is the rollout object (UID) a name holds and the record
// that first showed it.
type RolloutOrigin struct {
	UID string
	Seq uint64
}

// NewBooks returns empty books at record 0.
func NewBooks() *Books {
	return &Books{State: New(), Open: map[string]OpenIntent{}, Rollouts: map[string]RolloutOrigin{}}
}

const rolloutKeyPrefix = "inplacerollouts.rollbook.dev/"

// Apply folds one record into the state and the books.
func (d *Books) Apply(r journal.Record) error { return d.ApplyDecoded(Decode(r)) }

// ApplyDecoded is Apply for a record already decoded (ctl.DecodeAhead).
func (d *Books) ApplyDecoded(in Decoded) error {
	r := in.Record
	dec, err := d.State.apply(in)
	if err != nil {
		return err
	}
	switch r.Kind {
	case journal.KindActionIntended, journal.KindActionSucceeded, journal.KindActionFailed:
		f := dec.action
		if r.Kind == journal.KindActionIntended {
			// A retry of an intent still open keeps its first place in
			// line and its newest content.
			seq := r.Seq
			if o, ok := d.Open[f.Key]; ok {
				seq = o.Seq
			}
			d.Open[f.Key] = OpenIntent{Seq: seq, Fact: intentOf(f)}
		} else {
			delete(d.Open, f.Key)
		}
	case journal.KindObserved, journal.KindVanished:
		key, ok := strings.CutPrefix(r.Key, rolloutKeyPrefix)
		if !ok {
			return nil
		}
		if r.Kind == journal.KindVanished {
			delete(d.Rollouts, key)
			return nil
		}
		o := dec.observed
		switch {
		case o.Deleted:
			delete(d.Rollouts, key)
		case d.Rollouts[key].UID != o.UID:
			d.Rollouts[key] = RolloutOrigin{UID: o.UID, Seq: r.Seq}
		}
	}
	return nil
}

// TraceFrom is the record the trace loop starts at: the first record of
// the earliest rollout still running, or the record after the checkpoint.
func (d *Books) TraceFrom() uint64 {
	from := d.State.Seq + 1
	for key, o := range d.Rollouts {
		r := d.State.Rollouts[key]
		if r == nil || Terminal(r.Status.Phase) {
			continue
		}
		from = min(from, o.Seq)
	}
	return from
}

// Restored finishes books decoded from a checkpoint as the fold would
// have left them (journal.DecodeCheckpoint calls it).
func (d *Books) Restored() {
	if d.State == nil {
		return
	}
	for k, p := range d.State.Pods {
		p.Pod.restored() // what a checkpoint of an older binary kept
		// Before sharing: it may drop the state's text from the
		// annotations, which are the shape's, still the pod's own.
		p.restoreState(&d.State.sharing().states)
		d.State.sharing().pod(p, nil) // what pods share, shared again
		p.key = k
		if k == p.Namespace+"/"+p.Name {
			p.Name = k[len(p.Namespace)+1:] // one string, as the fold keeps it
		}
	}
	for k, r := range d.State.Rollouts {
		if k == r.Namespace+"/"+r.Name {
			r.key = k
		}
	}
}
