package journal

import (
	"fmt"
	"strconv"
)

// UID is an object's UID as a long-lived copy keeps it. Kubernetes writes
// a UID as a UUID (lower-case hex, 8-4-4-4-12): held as its 16 bytes it
// takes no heap of its own, where the decoded string held 48 bytes for
// every pod the fold keeps. Any other form, which the API does not rule
// out (and tests write), is held as written.
//
// Compare UIDs with Is, never ==: two UIDs of another form are equal by
// their text, not by where it is held (the blank field makes == a
// compile error).
type UID struct {
	_   [0]func()
	b   [16]byte
	odd *string // the UID as written, when it is not a UUID's canonical form
}

// MakeUID is s held as a UID.
func MakeUID(s string) UID {
	if s == "" {
		return UID{}
	}
	if b, ok := ParseUUID(s); ok && b != [16]byte{} {
		return UID{b: b}
	}
	odd := s // only this form allocates (a pointer to s would move s to the heap on every call)
	return UID{odd: &odd}
}

// String is the UID as written.
func (u UID) String() string {
	if u.odd != nil {
		return *u.odd
	}
	if u.b == [16]byte{} {
		return ""
	}
	return FormatUUID(u.b)
}

// Is reports whether u and v are the same UID.
func (u UID) Is(v UID) bool {
	if u.odd != nil || v.odd != nil {
		return u.odd != nil && v.odd != nil && *u.odd == *v.odd
	}
	return u.b == v.b
}

// IsText reports whether u is the UID written s, without making u's
// string.
func (u UID) IsText(s string) bool {
	if u.odd != nil {
		return *u.odd == s
	}
	if s == "" {
		return u.b == [16]byte{}
	}
	b, ok := ParseUUID(s)
	return ok && b == u.b && b != [16]byte{}
}

// IsZero reports whether u is the empty UID.
func (u UID) IsZero() bool { return u.odd == nil && u.b == [16]byte{} }

// MarshalText and UnmarshalText: a UID is its text, in JSON as in CBOR.
func (u UID) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

func (u *UID) UnmarshalText(b []byte) error { *u = MakeUID(string(b)); return nil }

func (u UID) MarshalCBOR() ([]byte, error) { return cborText(u.String()), nil }

func (u *UID) UnmarshalCBOR(b []byte) error {
	s, err := cborTextOf(b)
	*u = MakeUID(s)
	return err
}

// Version is an object's resourceVersion as a long-lived copy keeps it:
// a decimal number, as the apiserver writes one, held as a uint64 (where
// the decoded string held 16 bytes for every pod the fold keeps); any
// other form as written. Compare with Is or AtLeast, never ==.
type Version struct {
	_   [0]func()
	n   uint64
	odd *string // the version as written, when it is not a number's canonical form
}

// MakeVersion is s held as a Version.
func MakeVersion(s string) Version {
	if s == "" {
		return Version{}
	}
	if n, ok := ParseVersion(s); ok && n != 0 {
		return Version{n: n}
	}
	odd := s // as in MakeUID
	return Version{odd: &odd}
}

// String is the version as written.
func (v Version) String() string {
	if v.odd != nil {
		return *v.odd
	}
	if v.n == 0 {
		return ""
	}
	return strconv.FormatUint(v.n, 10)
}

// Is reports whether v and w are the same version.
func (v Version) Is(w Version) bool {
	if v.odd != nil || w.odd != nil {
		return v.odd != nil && w.odd != nil && *v.odd == *w.odd
	}
	return v.n == w.n
}

// AtLeast reports whether v is w or newer. A resourceVersion is opaque
// to clients, but the apiserver's are numbers, ordered: compared as
// numbers when both read as one, else only equal texts are.
func (v Version) AtLeast(w Version) bool {
	a, ok1 := v.number()
	b, ok2 := w.number()
	if ok1 && ok2 {
		return a >= b
	}
	return v.Is(w)
}

// AtLeastText is AtLeast of the version written s.
func (v Version) AtLeastText(s string) bool {
	a, ok := v.number()
	b, err := strconv.ParseUint(s, 10, 64)
	if ok && err == nil {
		return a >= b
	}
	return v.String() == s
}

// number is v read as a number, as strconv.ParseUint reads it.
func (v Version) number() (uint64, bool) {
	if v.odd == nil {
		return v.n, v.n != 0
	}
	n, err := strconv.ParseUint(*v.odd, 10, 64)
	return n, err == nil
}

// IsZero reports whether v is the empty version.
func (v Version) IsZero() bool { return v.odd == nil && v.n == 0 }

func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

func (v *Version) UnmarshalText(b []byte) error { *v = MakeVersion(string(b)); return nil }

func (v Version) MarshalCBOR() ([]byte, error) { return cborText(v.String()), nil }

func (v *Version) UnmarshalCBOR(b []byte) error {
	s, err := cborTextOf(b)
	*v = MakeVersion(s)
	return err
}

// ParseUUID reads a UUID as the apiserver writes one (lower-case hex,
// 8-4-4-4-12): ok only when FormatUUID gives s back.
func ParseUUID(s string) (u [16]byte, ok bool) {
	if len(s) != 36 {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return u, false
			}
			i++
			continue
		}
		hi, lo := unhex(s[i]), unhex(s[i+1])
		if hi > 15 || lo > 15 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

// FormatUUID is u as the apiserver writes a UUID.
func FormatUUID(u [16]byte) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 36)
	for i, x := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[x>>4], digits[x&15])
	}
	return string(b)
}

// unhex is a lower-case hex digit's value; 0xff for any other byte (an
// upper-case digit would not be written back as it was read).
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}

// ParseVersion reads a decimal resourceVersion: ok only when
// strconv.FormatUint gives s back (no sign, no leading zero, within a
// uint64).
func ParseVersion(s string) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// cborText is s as a CBOR text string, as every body encodes one.
func cborText(s string) []byte {
	b, _ := encMode.Marshal(s) // a string always encodes
	return b
}

// cborTextOf reads a CBOR text string (or null, as ""), as strictly as
// every body is read.
func cborTextOf(b []byte) (string, error) {
	var s *string
	if err := decMode.Unmarshal(b, &s); err != nil {
		return "", fmt.Errorf("journal: an identity is not a CBOR text string: %w", err)
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}
