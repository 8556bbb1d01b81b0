package journal

import (
	"fmt"
	"time"
)

// Kind says what a record holds. The set is closed: a reader that meets a
// kind it does not know fails with ErrUnknownKind instead of skipping it, so a
// journal written by a newer binary is never silently half-read.
type Kind uint8

const (
	// KindObserved is a compact snapshot of an object seen on a watch or list.
	KindObserved Kind = 1
	// KindVanished says an object was deleted while no watch was looking
	// (found by diffing a relist against what the journal knows).
	KindVanished Kind = 2
	// KindTick brings time to the planner: its Time is the planner's "now".
	KindTick Kind = 3
	// KindActionIntended is written by the actuator before it calls the API.
	KindActionIntended Kind = 4
	// KindActionSucceeded and KindActionFailed are written after the call.
	KindActionSucceeded Kind = 5
	KindActionFailed    Kind = 6
	// KindCursor records a watch's resourceVersion as an auditable fact; the
	// live cursor is also kept under its own key, in the same batch.
	KindCursor Kind = 7
)

var kindNames = map[Kind]string{
	KindObserved:        "Observed",
	KindVanished:        "Vanished",
	KindTick:            "Tick",
	KindActionIntended:  "ActionIntended",
	KindActionSucceeded: "ActionSucceeded",
	KindActionFailed:    "ActionFailed",
	KindCursor:          "Cursor",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Valid reports whether k is one of the kinds this binary understands.
func (k Kind) Valid() bool { _, ok := kindNames[k]; return ok }

// Entry is what a writer hands to Append: the journal assigns the sequence,
// the append time and the chain hash.
type Entry struct {
	Kind Kind
	// Key names what the record is about, e.g. "pods/shop/web-0" or a rollout
	// key; readers filter on it, the outbox derives NATS subjects from it.
	Key string
	// Body is the kind's payload, encoded with EncodeBody.
	Body []byte
}

// Record is an entry as committed.
type Record struct {
	Seq  uint64
	Time time.Time
	Kind Kind
	Key  string
	Body []byte
	// Prev is the Hash of the record before (zero for the first record);
	// Hash covers Prev and every other field, so changing, dropping or
	// reordering any record breaks every link after it.
	Prev [32]byte
	Hash [32]byte
}
