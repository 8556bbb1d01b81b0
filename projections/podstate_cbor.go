package projections

import (
	"slices"

	"rollbook.dev/rollbook/journal"
)

// A checkpoint holds every rolled pod's state. Encoded through the CBOR
// library from a stateWire, each cost ~600 bytes of garbage (the wire
// boxed, its containers collected, the library's output copied, each
// container ID's own encoding), and a 10,000-pod checkpoint allocated
// more than its size (TestCheckpointWriteAllocatesLessThanItsSize). So a
// state writes its CBOR itself, in one allocation of its size: the bytes
// the library writes for a stateWire under core deterministic encoding
// (TestStateEncodesAsItWas), map keys in that encoding's order (shorter
// first, then bytewise).

// CBOR's major types (journal.AppendCBORHead), and two simple values.
const (
	cborUint  = 0
	cborNeg   = 1
	cborBytes = 2
	cborText  = 3
	cborArray = 4
	cborMap   = 5
	cborTrue  = 0xf5
	cborNull  = 0xf6
)

// MarshalCBOR writes a checkpoint's pod state, digest included.
func (s PodState) MarshalCBOR() ([]byte, error) {
	rollout, revision, label := s.Rollout(), s.Revision(), s.Label()
	var before []containerWas
	if s.fleet != nil {
		before = s.fleet.before
	}
	// Written on the stack, then copied out at its size: the one
	// allocation.
	var buf [512]byte
	fields := uint64(4) // at, rev, before, rollout
	if label != "" {
		fields++
	}
	if s.Digest != ([8]byte{}) {
		fields++
	}
	b := journal.AppendCBORHead(buf[:0], cborMap, fields)
	b = appendCBORInt(appendCBORString(b, "at"), s.PatchedAt)
	b = appendCBORString(appendCBORString(b, "rev"), revision)
	if label != "" {
		b = appendCBORString(appendCBORString(b, "label"), label)
	}
	b = appendCBORString(b, "before")
	if before == nil {
		b = append(b, cborNull)
	} else {
		b = journal.AppendCBORHead(b, cborArray, uint64(len(before)))
		for i, c := range before {
			b = s.run(i).appendCBOR(b, c)
		}
	}
	if s.Digest != ([8]byte{}) {
		b = journal.AppendCBORHead(appendCBORString(b, "digest"), cborBytes, uint64(len(s.Digest)))
		b = append(b, s.Digest[:]...)
	}
	return slices.Clone(appendCBORString(appendCBORString(b, "rollout"), rollout)), nil
}

// appendCBOR appends the ContainerBefore of c and r as the library encodes
// one.
func (r containerRun) appendCBOR(b []byte, c containerWas) []byte {
	fields := uint64(3) // name, image, restarts
	if c.init {
		fields++
	}
	if c.imageID != "" {
		fields++
	}
	if !r.id.IsZero() {
		fields++
	}
	b = journal.AppendCBORHead(b, cborMap, fields)
	if c.init {
		b = append(appendCBORString(b, "init"), cborTrue)
	}
	b = appendCBORString(appendCBORString(b, "name"), c.name)
	b = appendCBORString(appendCBORString(b, "image"), c.image)
	if c.imageID != "" {
		b = appendCBORString(appendCBORString(b, "imageID"), c.imageID)
	}
	b = appendCBORInt(appendCBORString(b, "restarts"), int64(r.restarts))
	if !r.id.IsZero() {
		b = r.id.appendCBOR(appendCBORString(b, "containerID"))
	}
	return b
}

func appendCBORInt(b []byte, v int64) []byte {
	if v < 0 {
		return journal.AppendCBORHead(b, cborNeg, uint64(-1-v))
	}
	return journal.AppendCBORHead(b, cborUint, uint64(v))
}

func appendCBORString(b []byte, s string) []byte {
	return append(journal.AppendCBORHead(b, cborText, uint64(len(s))), s...)
}
