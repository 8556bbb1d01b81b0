package projections

import "slices"

// A checkpoint holds every rolled pod's state. Encoded through the CBOR
// library from a stateWire, each cost ~600 bytes of garbage (the wire
// boxed, its containers collected, the library's output copied, each
// container ID's own encoding), and a 10,000-pod checkpoint allocated
// more than its size (TestCheckpointWriteAllocatesLessThanItsSize). So a
// state writes its CBOR itself, in one allocation of its size: the bytes
// the library writes for a stateWire under core deterministic encoding
// (TestStateEncodesAsItWas), map keys in that encoding's order (shorter
// first, then bytewise).

const (
	cborUint  = 0 << 5
	cborNeg   = 1 << 5
	cborBytes = 2 << 5
	cborText  = 3 << 5
	cborArray = 4 << 5
	cborMap   = 5 << 5
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
	if s.Digest != ([16]byte{}) {
		fields++
	}
	b := appendCBORHead(buf[:0], cborMap, fields)
	b = appendCBORInt(appendCBORString(b, "at"), s.PatchedAt)
	b = appendCBORString(appendCBORString(b, "rev"), revision)
	if label != "" {
		b = appendCBORString(appendCBORString(b, "label"), label)
	}
	b = appendCBORString(b, "before")
	if before == nil {
		b = append(b, cborNull)
	} else {
		b = appendCBORHead(b, cborArray, uint64(len(before)))
		for i, c := range before {
			b = s.runs[i].appendCBOR(b, c)
		}
	}
	if s.Digest != ([16]byte{}) {
		b = appendCBORHead(appendCBORString(b, "digest"), cborBytes, 16)
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
	b = appendCBORHead(b, cborMap, fields)
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

// appendCBORHead appends a data item's head: its major type and argument,
// in the fewest bytes.
func appendCBORHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= 0xff:
		return append(b, major|24, byte(n))
	case n <= 0xffff:
		return append(b, major|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, major|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, major|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendCBORInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendCBORHead(b, cborNeg, uint64(-1-v))
	}
	return appendCBORHead(b, cborUint, uint64(v))
}

func appendCBORString(b []byte, s string) []byte {
	return append(appendCBORHead(b, cborText, uint64(len(s))), s...)
}
