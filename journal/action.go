package journal

// ActionFact is the body of ActionIntended, ActionSucceeded and
// ActionFailed records. The generic fields let projections track actions in
// flight without knowing the planner's types; Action carries the planner's
// full action (CBOR) on intents, for replay.
type ActionFact struct {
	Key      string `cbor:"1,keyasint"`
	Kind     string `cbor:"2,keyasint"`
	Rollout  string `cbor:"3,keyasint,omitempty"`
	Pod      string `cbor:"4,keyasint,omitempty"`
	UID      string `cbor:"5,keyasint,omitempty"`
	Revision string `cbor:"6,keyasint,omitempty"`
	// Action is the planner's action, encoded (intents only).
	Action []byte `cbor:"7,keyasint,omitempty"`
	// PlanSeq is the last journal sequence the plan was derived from:
	// replay folds records up to it and must derive this same action.
	PlanSeq uint64 `cbor:"8,keyasint,omitempty"`
	// ResultVersion is the resourceVersion the write returned (success):
	// the action is in flight until the watch shows that version.
	ResultVersion string `cbor:"9,keyasint,omitempty"`
	// Error and Class describe a failure; Class is one of the Class* values.
	Error string `cbor:"10,keyasint,omitempty"`
	Class string `cbor:"11,keyasint,omitempty"`
	// Attempt counts tries of the same Key, from 1.
	Attempt int `cbor:"12,keyasint,omitempty"`
	// TraceParent links the action to its span.
	TraceParent string `cbor:"13,keyasint,omitempty"`
	// Measurement is a measure action's result (ActionSucceeded only).
	Measurement *Measurement `cbor:"14,keyasint,omitempty"`
	// PlanActions is how many actions the intent's plan had (intents
	// only). A plan's intents are journaled in one append, but a stream
	// is published record by record: a leader that dies in between leaves
	// the stream, which the next leader continues, fewer of them. Replay
	// compares such a cut plan's journaled intents only.
	PlanActions int `cbor:"15,keyasint,omitempty"`
}

// Failure classes of ActionFailed records.
const (
	ClassConflict  = "conflict"  // a precondition failed: replan from fresh state
	ClassGone      = "gone"      // the object no longer exists: drop the action
	ClassInvalid   = "invalid"   // the server refused the content: report on the rollout
	ClassThrottled = "throttled" // 429 or timeouts: back off and retry
	ClassBlocked   = "blocked"   // a PodDisruptionBudget refused the eviction: retry once it allows one
	ClassAbandoned = "abandoned" // intended by a process that died before the outcome
	ClassOther     = "other"
)

// TickFact is the body of a Tick record: the record's time is the
// planner's "now".
type TickFact struct {
	Reason string `cbor:"1,keyasint,omitempty"`
}

// Measurement is one analysis measurement, carried by the ActionSucceeded
// record of a measure action: what was asked (Query), what came back
// (Value), and the verdict of the check's success condition on it. It is
// the evidence a promote or a rollback rests on, so replay reads it from
// here and never asks Prometheus again. It never holds a response body,
// only the value the check selected.
type Measurement struct {
	// Check is the check's name; Step the rollout step it gates.
	Check string `cbor:"1,keyasint"`
	Step  int32  `cbor:"2,keyasint"`
	// Provider is "prometheus" or "web".
	Provider string `cbor:"3,keyasint"`
	// Query is the PromQL query, or the web check's "METHOD URL".
	Query string `cbor:"4,keyasint,omitempty"`
	// Condition is the success condition the verdict comes from.
	Condition string `cbor:"5,keyasint,omitempty"`
	// Value is the measured value as JSON (a number, or a list of numbers
	// for a vector of several series; any JSON value for a web check).
	Value string `cbor:"6,keyasint,omitempty"`
	// Verdict is one of the Verdict* values.
	Verdict string `cbor:"7,keyasint"`
	// Error says why there is no value (Error) or why the check cannot be
	// evaluated at all (Invalid).
	Error string `cbor:"8,keyasint,omitempty"`
}

// Verdicts of a measurement.
const (
	VerdictPass = "Pass" // the success condition held
	VerdictFail = "Fail" // it did not
	// VerdictError: no value (unreachable, non-2xx, no data); counted
	// against the check's error limit.
	VerdictError = "Error"
	// VerdictInvalid: the check itself is wrong (its success condition
	// does not compile); the analysis fails at once.
	VerdictInvalid = "Invalid"
)
