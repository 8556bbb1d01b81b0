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
