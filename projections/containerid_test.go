package projections

import (
	"strings"
	"testing"

	"rollbook.dev/rollbook/journal"
)

// A container ID reads back as the runtime wrote it, whatever its form;
// Is agrees with comparing the strings; two IDs are Equal exactly when
// their strings are; and a checkpoint holds the ID's text. An ID in the
// runtimes' form takes no allocation to parse.
func TestContainerIDs(t *testing.T) {
	digits := strings.Repeat("0123456789abcdef", 4)
	ids := []string{
		"", "containerd://" + digits, "cri-o://" + digits, "docker://" + digits, "kwok://" + digits,
		"containerd://" + digits[:63] + "0",            // one digit differs
		"containerd://" + strings.ToUpper(digits),      // upper case: held as it is
		"containerd://" + digits[:62],                  // too short
		"containerd://" + digits + "0",                 // too long
		"containerd://" + digits[:63] + "g",            // not a digit
		"rkt://" + digits,                              // another runtime
		"dry-run://u-1/app/3", "containerd:/" + digits, // other forms
		"x://" + strings.Repeat("y", 300),                          // long
		"containerd://" + strings.Repeat("0", 64), "containerd://", // a zero sum: held as text
	}
	for _, a := range ids {
		id := ParseContainerID(a)
		if id.String() != a {
			t.Errorf("%q reads back as %q", a, id.String())
		}
		if id.IsZero() != (a == "") {
			t.Errorf("%q: IsZero %v", a, id.IsZero())
		}
		for _, b := range ids {
			if id.Is(b) != (a == b) {
				t.Errorf("ParseContainerID(%q).Is(%q) = %v", a, b, id.Is(b))
			}
			if id.Equal(ParseContainerID(b)) != (a == b) {
				t.Errorf("ParseContainerID(%q).Equal(ParseContainerID(%q)): %v", a, b, id.Equal(ParseContainerID(b)))
			}
		}
		enc, err := journal.EncodeBody(id)
		if err != nil {
			t.Fatal(err)
		}
		var text string
		if err := journal.DecodeBody(enc, &text); err != nil || text != a {
			t.Errorf("%q encodes as %x (%v)", a, enc, err)
		}
		var back ContainerID
		if err := journal.DecodeBody(enc, &back); err != nil || !back.Equal(id) {
			t.Errorf("%q decodes as %q (%v)", a, back.String(), err)
		}
	}
	if id := ParseContainerID("containerd://" + digits); id.textOf() != "containerd" || !id.hex() {
		t.Errorf("a containerd ID is held as %+v, not as its sum", id)
	}
	s := "containerd://" + digits
	if n := testing.AllocsPerRun(100, func() { ParseContainerID(s) }); n != 0 {
		t.Errorf("parsing a containerd ID allocates %v times", n)
	}
}
