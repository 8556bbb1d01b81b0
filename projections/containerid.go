package projections

import (
	"encoding/hex"

	"rollbook.dev/rollbook/journal"
)

// ContainerID is a container's ID as the fold keeps it. Container runtimes
// write "<runtime>://<64 hex digits>" (containerd, CRI-O and Docker all
// do), the one string of a container no other pod has: 80 bytes of heap
// for each container of each pod. A ContainerID of that form holds the
// runtime's name, a constant, and the 32 bytes the digits spell, in the
// container itself; any other ID (another runtime, the dry run's) is held
// as it is. Two IDs are the same exactly when Equal says so (== tells
// IDs held as text apart by where their text is).
//
// An ID held as its sum has a sum that is not all zeros: the one ID whose
// digits are all zeros is held as it is, so a zero sum marks an ID held
// as text, and a ContainerID is 40 bytes, not 48 with a flag (a fleet's
// pods hold two or three).
//
// The text is held by a pointer, one word where a string is two: to the
// runtime's name in runtimes for an ID held as its sum (no allocation), to
// a string of its own for an ID held as text (rare on a real cluster:
// another runtime, the dry run).
type ContainerID struct {
	sum  [32]byte
	text *string // the runtime's name when sum holds the digits; else the ID; nil for ""
}

// runtimes are the runtimes whose IDs are held as a sum: their names are
// constants, so an ID holds none of the decoded string. kwok's simulated
// kubelets (and this project's own fleet, test/fleet) write the same form.
var runtimes = [...]string{"containerd", "cri-o", "docker", "kwok"}

// textID is an ID held as text.
func textID(id string) ContainerID {
	if id == "" {
		return ContainerID{}
	}
	return ContainerID{text: &id}
}

// textOf is the text a ContainerID holds.
func (id ContainerID) textOf() string {
	if id.text == nil {
		return ""
	}
	return *id.text
}

// Equal says whether id and o are the same ID.
func (id ContainerID) Equal(o ContainerID) bool {
	return id.sum == o.sum && id.textOf() == o.textOf()
}

// ParseContainerID is id as the fold keeps it.
func ParseContainerID(id string) ContainerID {
	if len(id) < 64+3 {
		return textID(id)
	}
	n := len(id) - 64 - 3
	if id[n:n+3] != "://" {
		return textID(id)
	}
	var out ContainerID
	for i := range runtimes {
		if id[:n] == runtimes[i] {
			out.text = &runtimes[i]
		}
	}
	digits := id[n+3:]
	for i := range out.sum {
		hi, lo := unhex[digits[2*i]], unhex[digits[2*i+1]]
		if hi|lo > 15 { // upper case, or not a digit: held as it is
			return textID(id)
		}
		out.sum[i] = hi<<4 | lo
	}
	if out.text == nil || !out.hex() { // another runtime, or all-zero digits
		return textID(id)
	}
	return out
}

// hex: id holds the digits in sum.
func (id ContainerID) hex() bool { return id.sum != [32]byte{} }

// unhex is each lower-case hex digit's value, 0xff for every other byte:
// one pass over an ID's digits decodes and checks them.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	return t
}()

// String is the ID as the runtime wrote it.
func (id ContainerID) String() string {
	if !id.hex() {
		return id.textOf()
	}
	return id.textOf() + "://" + hex.EncodeToString(id.sum[:])
}

// IsZero: no ID (the container has not run).
func (id ContainerID) IsZero() bool { return id.text == nil && !id.hex() }

// Is says whether id is s, without making id's string: planning compares
// each pod under way's IDs with those its state recorded, every plan.
func (id ContainerID) Is(s string) bool {
	if !id.hex() {
		return id.textOf() == s
	}
	text := id.textOf()
	n := len(text)
	if len(s) != n+3+64 || s[:n] != text || s[n:n+3] != "://" {
		return false
	}
	const digits = "0123456789abcdef"
	for i, b := range id.sum {
		if s[n+3+2*i] != digits[b>>4] || s[n+4+2*i] != digits[b&15] {
			return false
		}
	}
	return true
}

// MarshalText is the ID's text: a state annotation's JSON holds it so.
func (id ContainerID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (id *ContainerID) UnmarshalText(b []byte) error {
	*id = ParseContainerID(string(b))
	return nil
}

// MarshalCBOR encodes id as the text a journal.Container holds.
func (id ContainerID) MarshalCBOR() ([]byte, error) { return id.appendCBOR(nil), nil }

// appendCBOR appends id as a CBOR text string, without making its string.
func (id ContainerID) appendCBOR(b []byte) []byte {
	if !id.hex() {
		return appendCBORString(b, id.textOf())
	}
	text := id.textOf()
	b = journal.AppendCBORHead(b, cborText, uint64(len(text)+3+2*len(id.sum)))
	b = append(append(b, text...), "://"...)
	return hex.AppendEncode(b, id.sum[:])
}

// UnmarshalCBOR reads what MarshalCBOR wrote.
func (id *ContainerID) UnmarshalCBOR(b []byte) error {
	var s string
	if err := journal.DecodeBody(b, &s); err != nil {
		return err
	}
	*id = ParseContainerID(s)
	return nil
}
