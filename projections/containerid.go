package projections

import (
	"encoding/hex"
	"unique"

	"rollbook.dev/rollbook/journal"
)

// ContainerID is a container's ID as the fold keeps it. Container runtimes
// write "<runtime>://<64 hex digits>" (containerd, CRI-O and Docker all
// do), the one string of a container no other pod has: 80 bytes of heap
// for each container of each pod. A ContainerID of that form holds the
// runtime's name, a constant, and the 32 bytes the digits spell, in the
// container itself; any other ID (another runtime, the dry run's) is held
// as it is. Two IDs are the same exactly when their ContainerIDs are ==.
//
// An ID held as its sum has a sum that is not all zeros: the one ID whose
// digits are all zeros is held as it is, so a zero sum marks an ID held
// as text, and a ContainerID is 40 bytes, not 48 with a flag (a fleet's
// pods hold two or three).
//
// The text is a unique.Handle: one word, not a string's two, and two
// handles are == exactly when their strings are, so IDs still compare
// with ==. A runtime's name is made a handle once; only an ID held as
// text is made one as it is parsed (rare: other runtimes, the dry run).
type ContainerID struct {
	sum  [32]byte
	text unique.Handle[string] // the runtime's name when sum holds the digits; else the ID; zero for ""
}

// runtimes are the runtimes whose IDs are held as a sum: their names are
// constants, so an ID holds none of the decoded string.
var runtimes = [...]string{"containerd", "cri-o", "docker"}

// runtimeNames are runtimes' names as handles, made once.
var runtimeNames = func() (h [len(runtimes)]unique.Handle[string]) {
	for i, r := range runtimes {
		h[i] = unique.Make(r)
	}
	return h
}()

// textID is an ID held as text.
func textID(id string) ContainerID {
	if id == "" {
		return ContainerID{}
	}
	return ContainerID{text: unique.Make(id)}
}

// textOf is the text a ContainerID holds.
func (id ContainerID) textOf() string {
	if id.text == (unique.Handle[string]{}) {
		return ""
	}
	return id.text.Value()
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
	known := false
	for i, r := range runtimes {
		if id[:n] == r {
			out.text, known = runtimeNames[i], true
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
	if !known || !out.hex() {
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
func (id ContainerID) IsZero() bool { return id == ContainerID{} }

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

// MarshalCBOR encodes id as the text a journal.Container holds.
func (id ContainerID) MarshalCBOR() ([]byte, error) { return journal.EncodeBody(id.String()) }

// UnmarshalCBOR reads what MarshalCBOR wrote.
func (id *ContainerID) UnmarshalCBOR(b []byte) error {
	var s string
	if err := journal.DecodeBody(b, &s); err != nil {
		return err
	}
	*id = ParseContainerID(s)
	return nil
}
