package journal

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers match them with errors.Is; the errors returned
// wrap them with the record's sequence and what was wrong.
var (
	// ErrCorrupt means stored bytes fail their checksum, carry an unknown
	// format version or do not decode.
	ErrCorrupt = errors.New("journal: corrupt record")
	// ErrTooLarge means a record body would exceed MaxBodyBytes.
	ErrTooLarge = errors.New("journal: record body too large")
	// ErrUnknownKind means a record (or an entry handed to Append) has a Kind
	// this binary does not know. It is never skipped: see Kind.
	ErrUnknownKind = errors.New("journal: unknown kind")
	// ErrBrokenChain means records are individually intact but do not link:
	// a sequence gap, a sequence out of place or a Prev hash that does not
	// match the record before.
	ErrBrokenChain = errors.New("journal: broken chain")
	// ErrDiskFull is returned to Appends still waiting for disk space
	// when the journal closes, and by SaveCheckpoint on a disk short of
	// space: nothing was written.
	ErrDiskFull = errors.New("journal: disk full")
	// ErrClosed is returned by calls on a closed Journal.
	ErrClosed = errors.New("journal: closed")
	// ErrStop may be returned by a Read or Follow callback to end the read
	// early; Read and Follow then return nil.
	ErrStop = errors.New("journal: stop reading")
)

// LinkError reports the first record that breaks the journal, found by
// Verify, Read or Open. Err wraps ErrCorrupt, ErrUnknownKind or
// ErrBrokenChain.
type LinkError struct {
	Seq uint64
	Err error
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("journal: record %d: %v", e.Seq, trimPrefix(e.Err))
}

func (e *LinkError) Unwrap() error { return e.Err }

// trimPrefix drops a leading "journal: " from a wrapped error's text so a
// LinkError reads "journal: record 7: corrupt record: ..." rather than
// repeating the package name.
func trimPrefix(err error) string {
	s := err.Error()
	const p = "journal: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
