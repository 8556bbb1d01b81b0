package journal

import (
	"encoding/json"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// TestIdentityKeepsTheText: a UID and a resourceVersion read back exactly
// as written, in every form, through String, JSON and CBOR; the forms the
// apiserver writes take no text of their own; and equality and order are
// those of the texts.
func TestIdentityKeepsTheText(t *testing.T) {
	uids := []struct {
		s       string
		compact bool
	}{
		{"6c3c624b-58db-4bcd-9a6b-1c2d3e4f5a6b", true},
		{"", true},
		{"6C3C624B-58DB-4BCD-9A6B-1C2D3E4F5A6B", false}, // upper case would be written back lower
		{"00000000-0000-0000-0000-000000000000", false}, // all zero: the empty UID's bytes
		{"u1", false},
		{"6c3c624b58db4bcd9a6b1c2d3e4f5a6b", false},
		{"6c3c624b-58db-4bcd-9a6b-1c2d3e4f5a6g", false},
	}
	for _, c := range uids {
		u := MakeUID(c.s)
		if got := u.String(); got != c.s {
			t.Errorf("MakeUID(%q).String() = %q", c.s, got)
		}
		if (u.odd == nil) != c.compact {
			t.Errorf("MakeUID(%q): held as text %v, want %v", c.s, u.odd != nil, !c.compact)
		}
		if !u.Is(MakeUID(c.s)) || !u.IsText(c.s) || u.IsZero() != (c.s == "") {
			t.Errorf("MakeUID(%q) is not itself", c.s)
		}
		for _, d := range uids {
			if d.s != c.s && (u.Is(MakeUID(d.s)) || u.IsText(d.s)) {
				t.Errorf("MakeUID(%q) is %q", c.s, d.s)
			}
		}
		roundTrip(t, c.s, u, new(UID), func(v any) string { return v.(*UID).String() })
	}

	versions := []struct {
		s       string
		compact bool
	}{
		{"12345", true}, {"", true}, {"18446744073709551615", true},
		{"0", false}, {"007", false}, {"18446744073709551616", false}, {"-1", false}, {"v2", false},
	}
	for _, c := range versions {
		v := MakeVersion(c.s)
		if got := v.String(); got != c.s {
			t.Errorf("MakeVersion(%q).String() = %q", c.s, got)
		}
		if (v.odd == nil) != c.compact {
			t.Errorf("MakeVersion(%q): held as text %v, want %v", c.s, v.odd != nil, !c.compact)
		}
		for _, d := range versions {
			if v.Is(MakeVersion(d.s)) != (c.s == d.s) {
				t.Errorf("MakeVersion(%q).Is(%q) = %v", c.s, d.s, !(c.s == d.s))
			}
		}
		roundTrip(t, c.s, v, new(Version), func(v any) string { return v.(*Version).String() })
	}
}

func roundTrip(t *testing.T, s string, v any, into any, text func(any) string) {
	t.Helper()
	b, err := json.Marshal(v)
	if want, _ := json.Marshal(s); err != nil || string(b) != string(want) {
		t.Errorf("%q in JSON: %s, %v", s, b, err)
	}
	if err := json.Unmarshal(b, into); err != nil || text(into) != s {
		t.Errorf("%q from JSON: %q, %v", s, text(into), err)
	}
	b, err = cbor.Marshal(v)
	if want, _ := cbor.Marshal(s); err != nil || string(b) != string(want) {
		t.Errorf("%q in CBOR: %x, %v", s, b, err)
	}
	if err := cbor.Unmarshal(b, into); err != nil || text(into) != s {
		t.Errorf("%q from CBOR: %q, %v", s, text(into), err)
	}
}

// TestVersionOrder: versions compare as numbers where both read as one
// (as strconv.ParseUint reads them, leading zeros and all), else only
// equal texts are at least each other.
func TestVersionOrder(t *testing.T) {
	for _, c := range []struct {
		have, want string
		ok         bool
	}{
		{"10", "9", true}, {"9", "10", false}, {"10", "10", true},
		{"007", "7", true}, {"7", "007", true}, {"6", "007", false},
		{"0", "0", true}, {"5", "0", true},
		{"abc", "abc", true}, {"abc", "abd", false}, {"10", "abc", false},
		{"", "", true}, {"", "1", false}, {"1", "", false},
	} {
		h := MakeVersion(c.have)
		if got := h.AtLeast(MakeVersion(c.want)); got != c.ok {
			t.Errorf("%q AtLeast %q = %v", c.have, c.want, got)
		}
		if got := h.AtLeastText(c.want); got != c.ok {
			t.Errorf("%q AtLeastText %q = %v", c.have, c.want, got)
		}
	}
}

// TestCompactIdentityAllocatesNothing: making and comparing the forms the
// apiserver writes allocate nothing (the fold makes one per pod record).
func TestCompactIdentityAllocatesNothing(t *testing.T) {
	const uid, rv = "6c3c624b-58db-4bcd-9a6b-1c2d3e4f5a6b", "123456789"
	u, v := MakeUID(uid), MakeVersion(rv)
	if n := testing.AllocsPerRun(100, func() {
		if !MakeUID(uid).Is(u) || !u.IsText(uid) || !MakeVersion(rv).AtLeast(v) || !v.AtLeastText(rv) {
			t.Fatal("not equal")
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
