package planner

import (
	"slices"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/projections"
)

// conditions edits a rollout's conditions, keeping transition times of
// conditions whose status does not change.
type conditions struct {
	list []metav1.Condition
	now  int64
}

func newConditions(old []metav1.Condition, now int64) *conditions {
	return &conditions{list: append([]metav1.Condition(nil), old...), now: now}
}

// set sets a condition; a False condition that was never set is left out,
// so a healthy rollout does not carry a list of things that are fine...
func (c *conditions) set(typ, status, reason, message string) {
	for i := range c.list {
		if c.list[i].Type == typ {
			if c.list[i].Status != metav1.ConditionStatus(status) {
				c.list[i].LastTransitionTime = *timeAt(c.now)
			}
			c.list[i].Status, c.list[i].Reason, c.list[i].Message = metav1.ConditionStatus(status), reason, message
			return
		}
	}
	// ...unless it says something (WorkloadFound=False explains a Pending
	// rollout).
	if status == "False" && message == "" {
		return
	}
	c.list = append(c.list, metav1.Condition{Type: typ, Status: metav1.ConditionStatus(status), Reason: reason, Message: message, LastTransitionTime: *timeAt(c.now)})
}

func (c *conditions) has(typ string) bool {
	for _, x := range c.list {
		if x.Type == typ {
			return true
		}
	}
	return false
}

func (c *conditions) is(typ string) bool {
	for _, x := range c.list {
		if x.Type == typ {
			return x.Status == metav1.ConditionTrue
		}
	}
	return false
}

func (c *conditions) reason(typ string) string {
	for _, x := range c.list {
		if x.Type == typ {
			return x.Reason
		}
	}
	return ""
}

func (c *conditions) sorted() []metav1.Condition {
	out := append([]metav1.Condition(nil), c.list...)
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// timeAt is a Unix-ns time as the API stores it: whole seconds, UTC.
func timeAt(ns int64) *metav1.Time {
	t := metav1.NewTime(time.Unix(ns/1e9, 0).UTC())
	return &t
}

// finishStatus writes the rollout's status when it changed, and records an
// Event when the phase did. Count-only changes are written at most once a
// second: a 10,000-pod rollout must not cost a status write per pod.
func (p *planning) finishStatus(r *projections.Rollout, st *projections.RolloutStatus, conds *conditions) {
	setReady(st, conds)
	st.Conditions = conds.sorted()
	old := r.Status
	if sameStatus(old, *st, true) {
		return
	}
	rk := r.Key()
	if p.s.Pending["rollout:"+rk] != nil {
		return
	}
	if sameStatus(old, *st, false) {
		if due := r.ObservedAt + 1e9; p.now < due {
			p.wake(due)
			return
		}
	}
	st.JournalSequence = p.s.Seq
	p.try(Action{Kind: Status, Rollout: rk, RolloutUID: r.UID, Status: st})
	if st.Phase != old.Phase {
		typ, msg := "Normal", "revision "+st.TargetRevision
		var reason string
		// A pause the user asked for (spec.paused, a step) is Normal; only
		// a pause on failure, or on a lifecycle hook's timeout, warns.
		failed := false
		for _, c := range st.Conditions {
			if c.Status == metav1.ConditionTrue && (c.Type == "Failed" || c.Type == "HookTimedOut" && c.Reason == "Paused") {
				failed = true
			}
		}
		switch {
		case st.Phase == projections.PhaseFailed, st.Phase == projections.PhasePaused && failed:
			typ = "Warning"
		}
		// The most telling condition's message, by an explicit order
		// (later wins); WorkloadFound tells when False.
		for _, typ := range []string{"Conflict", "Paused", "HookTimedOut", "NoReadinessGate", "Stalled", "NotInPlace", "Failed", "WorkloadFound", "Invalid"} {
			for _, c := range st.Conditions {
				bad := c.Status == metav1.ConditionTrue
				switch typ {
				case "NoReadinessGate":
					bad = bad && c.Reason == "Skipped"
				case "HookTimedOut":
					bad = bad && c.Reason == "Paused"
				}
				if typ == "WorkloadFound" {
					bad = c.Status == metav1.ConditionFalse
				}
				if c.Type == typ && bad && c.Message != "" {
					msg = c.Message
				}
			}
		}
		// Events are recorded once per key, which holds the message: the
		// revision in it lets the same condition record an Event again for
		// a later revision.
		if msg != "revision "+st.TargetRevision && st.TargetRevision != "" {
			msg += " (revision " + st.TargetRevision + ")"
		}
		reason = st.Phase
		a := Action{Kind: Event, Rollout: rk, RolloutUID: r.UID, EventType: typ, Reason: reason, Message: msg}
		if !p.s.Emitted[a.Key()] {
			p.add(a)
		}
	}
}

// sameStatus compares statuses, ignoring the journal sequence and
// condition times; with counts false it also ignores the counts, and the
// message of HookWaiting, which names the pods waiting and so changes as
// often as the counts do.
func sameStatus(a, b projections.RolloutStatus, counts bool) bool {
	if a.Phase != b.Phase || a.ObservedGeneration != b.ObservedGeneration || a.CurrentStep != b.CurrentStep ||
		a.TargetRevision != b.TargetRevision || a.TraceID != b.TraceID || !sameTime(a.StepPausedAt, b.StepPausedAt) ||
		a.ApprovedStepsBase != b.ApprovedStepsBase || a.TraceParent != b.TraceParent || !sameAnalysis(a.Analysis, b.Analysis) ||
		a.WorkloadRevision != b.WorkloadRevision || a.WorkloadGeneration != b.WorkloadGeneration {
		return false
	}
	if counts && (a.Replicas != b.Replicas || a.Updated != b.Updated || a.UpdatedReady != b.UpdatedReady ||
		a.Unavailable != b.Unavailable || a.Failed != b.Failed) {
		return false
	}
	if len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason {
			return false
		}
		if x.Message != y.Message && (counts || x.Type != "HookWaiting") {
			return false
		}
	}
	return true
}

func sameTime(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Unix() == b.Unix()
}

func sameAnalysis(a, b *projections.AnalysisStatus) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Step == b.Step && a.Phase == b.Phase && slices.Equal(a.Checks, b.Checks)
}

// setReady sets the Ready condition GitOps tools and `kubectl wait
// --for=condition=Ready` read for health. Invariant: Ready is True only
// when the rollout of the revision the status covers (TargetRevision,
// WorkloadRevision) is done: phase Succeeded. Its message holds no counts,
// so it changes only with the phase and costs no status write per pod.
func setReady(st *projections.RolloutStatus, conds *conditions) {
	what := "the rollout"
	if st.TargetRevision != "" {
		what += " of revision " + st.TargetRevision
	}
	if st.WorkloadRevision != "" {
		what += " (" + st.WorkloadRevision + ")"
	}
	switch {
	case st.Phase == projections.PhaseSucceeded:
		conds.set("Ready", "True", st.Phase, what+" is complete: every targeted pod is updated and ready")
	case conds.is("Aborted"):
		conds.set("Ready", "False", "Aborted", what+" was aborted")
	case st.Phase == "":
		conds.set("Ready", "False", "Unknown", what+" has not been planned yet")
	default:
		conds.set("Ready", "False", st.Phase, what+" is "+st.Phase)
	}
}
