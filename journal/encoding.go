package journal

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// FormatVersion is the first byte of every stored value. A reader refuses any
// other version with ErrCorrupt rather than guessing at its layout.
const FormatVersion byte = 1

// crcTable is CRC-32C (Castagnoli), hardware-accelerated on amd64 and arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// encMode is CBOR core deterministic encoding (RFC 8949 §4.2.1): sorted map
// keys, shortest integer and float forms, no indefinite lengths. Equal
// values always encode to equal bytes, which is what makes hashes and
// replay comparisons meaningful.
var encMode = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic("journal: cbor enc mode: " + err.Error())
	}
	return m
}()

// MaxBodyBytes bounds an encoded record body. What is encoded always
// decodes: a body this size cannot hold more map pairs or array elements
// than decMode accepts (each takes at least two bytes), and a record stays
// well under NATS's default 1 MiB payload, so the outbox can always
// publish it.
const MaxBodyBytes = 256 << 10

// Decoder limits, stated rather than left to the library's defaults.
const (
	maxPairs  = 1 << 17
	maxNested = 32
)

// decMode rejects anything the encoder would not have produced in shape:
// duplicate map keys, indefinite lengths, tags, invalid UTF-8, fields the
// target type does not have, trailing bytes. NB: rejecting unknown fields
// means a body written by a newer binary with an added field fails to decode
// here; that is deliberate, as for unknown kinds: a replay that silently
// drops a field can diverge without saying so.
var decMode = newDecMode(maxPairs)

// newDecMode is decMode's strictness with maps and arrays of up to limit
// entries.
func newDecMode(limit int) cbor.DecMode { return decModeOf(limit, cbor.ExtraDecErrorUnknownField) }

// decModeOf is newDecMode, with extra saying whether a field the target
// does not have is an error.
func decModeOf(limit int, extra cbor.ExtraDecErrorCond) cbor.DecMode {
	m, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		ExtraReturnErrors: extra,
		MaxMapPairs:       limit,
		MaxArrayElements:  limit,
		MaxNestedLevels:   maxNested,
	}.DecMode()
	if err != nil {
		panic("journal: cbor dec mode: " + err.Error())
	}
	return m
}

// EncodeBody encodes a record body (Observed, Vanished, CursorFact, an
// action, ...) as core deterministic CBOR.
// A body over MaxBodyBytes is refused with ErrTooLarge.
func EncodeBody(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("journal: encode body: %w", err)
	}
	if len(b) > MaxBodyBytes {
		return nil, fmt.Errorf("journal: encode body: %w: %d bytes, the bound is %d", ErrTooLarge, len(b), MaxBodyBytes)
	}
	return b, nil
}

// DecodeBody decodes a body written by EncodeBody into v. Malformed input,
// trailing bytes and unknown fields are errors wrapping ErrCorrupt.
func DecodeBody(b []byte, v any) error {
	if fastBody(b, v) {
		return nil
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("journal: decode body: %w: %w", ErrCorrupt, err)
	}
	return nil
}

// DecodeObserved is DecodeBody for an Observed, o not escaping: the fold
// decodes each record into a value of its own and keeps only a pod's
// part of it (projections.NewPod).
func DecodeObserved(b []byte, o *Observed) error {
	if fastObserved(b, o) {
		return nil
	}
	slow := new(Observed)
	if err := decMode.Unmarshal(b, slow); err != nil {
		*o = Observed{}
		return fmt.Errorf("journal: decode body: %w: %w", ErrCorrupt, err)
	}
	*o = *slow
	return nil
}

// Decode decodes r's body into v; see DecodeBody.
func (r Record) Decode(v any) error { return DecodeBody(r.Body, v) }

// envelope is a record as encoded: a CBOR array, so field order is fixed by
// position and no field names are stored. The hash is not stored: it is
// recomputed from Prev and these bytes, so it cannot disagree with them.
type envelope struct {
	_    struct{} `cbor:",toarray"`
	Seq  uint64
	Time int64 // Unix nanoseconds
	Kind uint8
	Key  string
	Body []byte
	// Prev is a slice, not a [32]byte, so a wrong length is caught on decode
	// instead of being zero-filled or truncated.
	Prev []byte
}

// value layout: FormatVersion | CBOR(envelope) | CRC-32C(version+CBOR), big endian.
const crcLen = 4

// encodeRecord returns r's stored value and its chain hash. r.Hash is ignored.
func encodeRecord(r *Record) (value []byte, hash [32]byte, err error) {
	if !r.Kind.Valid() {
		return nil, hash, fmt.Errorf("%w: %d", ErrUnknownKind, uint8(r.Kind))
	}
	env, err := encMode.Marshal(envelope{
		Seq:  r.Seq,
		Time: r.Time.UnixNano(),
		Kind: uint8(r.Kind),
		Key:  r.Key,
		Body: r.Body,
		Prev: r.Prev[:],
	})
	if err != nil {
		return nil, hash, fmt.Errorf("journal: encode record %d: %w", r.Seq, err)
	}
	return frame(env), chainHash(r.Prev, env), nil
}

// chainHash is SHA-256(prev || envelope bytes).
func chainHash(prev [32]byte, env []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(env)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// DecodeRecord decodes a stored value (as kept in Pebble and carried as the
// payload of outbox messages), checking its version and checksum, and
// recomputes its Hash. It does not check how the record links to others:
// that takes the record before it (see Verify).
func DecodeRecord(value []byte) (Record, error) { return decodeRecord(value, false) }

// decodeRecord is DecodeRecord; with aliasBody, the Record's Body is part
// of value (when it is in the canonical form, as every stored record is)
// instead of a copy: for a reader that reads the body while it has value,
// or not at all.
func decodeRecord(value []byte, aliasBody bool) (Record, error) {
	env, err := unframe(value)
	if err != nil {
		return Record{}, err
	}
	e, ok := decodeEnvelope(env, aliasBody)
	if !ok {
		// Into a variable of its own: taking e's address would move it
		// to the heap on the fast path too.
		var slow envelope
		if err := decMode.Unmarshal(env, &slow); err != nil {
			return Record{}, fmt.Errorf("%w: envelope: %w", ErrCorrupt, err)
		}
		e = slow
	}
	if len(e.Prev) != 32 {
		return Record{}, fmt.Errorf("%w: prev hash is %d bytes", ErrCorrupt, len(e.Prev))
	}
	r := Record{
		Seq:  e.Seq,
		Time: time.Unix(0, e.Time).UTC(),
		Kind: Kind(e.Kind),
		Key:  e.Key,
		Body: e.Body,
	}
	copy(r.Prev[:], e.Prev)
	if !r.Kind.Valid() {
		return Record{}, fmt.Errorf("%w: %d", ErrUnknownKind, e.Kind)
	}
	r.Hash = chainHash(r.Prev, env)
	return r, nil
}

// decodeEnvelope is the fast path of DecodeRecord for an envelope in
// encMode's canonical form (see canonReader); ok is false for anything
// else, which decMode then reads. e.Prev aliases b, and e.Body with
// aliasBody.
func decodeEnvelope(b []byte, aliasBody bool) (e envelope, ok bool) {
	r := canonReader{b: b}
	if n := r.count(majArray); n != 6 {
		return e, false
	}
	e.Seq = r.uint()
	e.Time = r.int64()
	if k := r.uint(); k <= 0xff {
		e.Kind = uint8(k)
	} else {
		r.bad = true
	}
	e.Key = r.text()
	if aliasBody && r.peek() != cborNull {
		e.Body = r.raw(majBytes)
	} else {
		e.Body = r.bytes()
	}
	e.Prev = r.raw(majBytes) // b's own: DecodeRecord copies it into the Record
	r.end()
	return e, !r.bad
}

// frame wraps payload as a stored value: version | payload | CRC-32C.
func frame(payload []byte) []byte {
	v := make([]byte, 0, 1+len(payload)+crcLen)
	v = append(v, FormatVersion)
	v = append(v, payload...)
	return binary.BigEndian.AppendUint32(v, crc32.Checksum(v, crcTable))
}

// unframe checks a stored value's version and checksum and returns its
// payload, aliasing value.
func unframe(value []byte) ([]byte, error) {
	if len(value) < 1+crcLen {
		return nil, fmt.Errorf("%w: value is %d bytes", ErrCorrupt, len(value))
	}
	if value[0] != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrCorrupt, value[0], FormatVersion)
	}
	n := len(value) - crcLen
	if got, want := crc32.Checksum(value[:n], crcTable), binary.BigEndian.Uint32(value[n:]); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, stored %08x", ErrCorrupt, got, want)
	}
	return value[1:n], nil
}

// Value returns the record's stored form (what DecodeRecord reads): the
// same bytes Pebble holds and the outbox publishes, so an export that
// carries it can be replayed and its chain verified elsewhere.
func (r Record) Value() ([]byte, error) {
	v, _, err := encodeRecord(&r)
	return v, err
}

// AppendCBORHead appends the head of a CBOR data item of major type major
// (0–7) and argument n, in its shortest form, as core deterministic
// encoding writes it: for the encoders that write CBOR by hand (a
// checkpoint's pieces, and what projections writes of a pod's state).
func AppendCBORHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, m|27), n)
	}
}
