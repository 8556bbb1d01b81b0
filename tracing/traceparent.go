package tracing

import (
	"strings"
	"sync"

	"rollbook.dev/rollbook/journal"
)

// TraceParents gives journal records their traceparent, for the outbox's
// NATS headers: an action record (intent or outcome) carries its action
// span's, a rollout record its rollout span's, any other record none.
//
// An ActionFact names its rollout ("namespace/name") but not the rollout's
// UID, from which the trace ID and every span ID derive. TraceParents
// therefore keeps a map from rollout name to UID, fed by the rollout
// records it is given. NB: it must be given records in journal order, as
// the outbox publishes them, and it must have seen a rollout's Observed
// record before that rollout's actions; an outbox that resumes from its
// cursor has skipped the records before it, so feed those to Observe first,
// or, starting from a checkpoint's state, give each rollout's UID to Learn
// (or have the actuator fill ActionFact.TraceParent, which is used as is).
//
// The map holds one entry per rollout name, dropped when the rollout is
// deleted. TraceParents is safe for concurrent use.
type TraceParents struct {
	mu   sync.Mutex
	uids map[string]string // rollout "namespace/name" → UID
}

// NewTraceParents returns a TraceParents that has seen nothing.
func NewTraceParents() *TraceParents {
	return &TraceParents{uids: map[string]string{}}
}

// RecordTraceParent returns a function for journal.OutboxOptions.TraceParent:
// NewTraceParents().Of.
func RecordTraceParent() func(journal.Record) string {
	return NewTraceParents().Of
}

// Observe learns from r without computing its traceparent: for the records
// before the point where the outbox resumes.
func (t *TraceParents) Observe(r journal.Record) { t.of(r, false) }

// Learn records that rollout "namespace/name" is the object uid: for a
// lookup that starts from a checkpoint's state instead of record 1.
func (t *TraceParents) Learn(rollout, uid string) {
	t.mu.Lock()
	t.uids[rollout] = uid
	t.mu.Unlock()
}

// Of learns from r and returns its traceparent, "" if it has none. A
// record that does not decode has none: the outbox must not stop over it.
func (t *TraceParents) Of(r journal.Record) string { return t.of(r, true) }

func (t *TraceParents) of(r journal.Record, want bool) string {
	switch r.Kind {
	case journal.KindObserved:
		if !strings.HasPrefix(r.Key, rolloutKeyPrefix) {
			return ""
		}
		var o journal.Observed
		if r.Decode(&o) != nil || o.Resource != rolloutResource || o.UID == "" {
			return ""
		}
		key := o.Namespace + "/" + o.Name
		t.mu.Lock()
		if o.Deleted {
			delete(t.uids, key)
		} else {
			t.uids[key] = o.UID
		}
		t.mu.Unlock()
		if !want {
			return ""
		}
		return RolloutTraceParent(o.UID)
	case journal.KindVanished:
		if !strings.HasPrefix(r.Key, rolloutKeyPrefix) {
			return ""
		}
		var v journal.Vanished
		if r.Decode(&v) != nil || v.Resource != rolloutResource {
			return ""
		}
		key := v.Namespace + "/" + v.Name
		t.mu.Lock()
		if t.uids[key] == v.UID {
			delete(t.uids, key)
		}
		t.mu.Unlock()
		if !want {
			return ""
		}
		return RolloutTraceParent(v.UID)
	case journal.KindActionIntended, journal.KindActionSucceeded, journal.KindActionFailed:
		if !want {
			return ""
		}
		var f journal.ActionFact
		if r.Decode(&f) != nil {
			return ""
		}
		if f.TraceParent != "" {
			return f.TraceParent
		}
		if f.Rollout == "" {
			return ""
		}
		t.mu.Lock()
		uid := t.uids[f.Rollout]
		t.mu.Unlock()
		if uid == "" {
			return ""
		}
		return TraceParent(RolloutTraceID(uid), ActionSpanID(uid, f.Key, f.PlanSeq, f.Attempt))
	}
	return ""
}
