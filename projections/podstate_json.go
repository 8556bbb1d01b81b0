package projections

import (
	"encoding/json"
	"strconv"
	"strings"
)

// The state annotation's JSON, written and read without reflection.
// The planner writes one for every pod it patches, and the fold reads
// each new one; through encoding/json those were an eighth of replay's
// fold-and-plan goroutine (BENCHMARKS.md §6). Both paths handle the
// form Rollbook writes, with strings that need no escaping (every
// rollout key, revision, image and container ID Kubernetes accepts),
// and hand anything else to encoding/json, so the bytes written and the
// state read are always encoding/json's (TestStateJSONAsEncodingJSON,
// FuzzStateJSON).

// JSON is the state annotation's text, as MarshalJSON writes it.
func (s PodState) JSON() string {
	w := s.wire()
	if b, ok := w.appendJSON(make([]byte, 0, 256)); ok {
		return string(b)
	}
	b, _ := json.Marshal(w) // a struct of strings and numbers always encodes
	return string(b)
}

// appendJSON appends w as encoding/json encodes it; false if a string
// needs escaping, for encoding/json to write instead.
func (w *stateWire) appendJSON(b []byte) ([]byte, bool) {
	ok := true
	str := func(key, v string) {
		b = append(append(append(b, key...), '"'), v...)
		b = append(b, '"')
		ok = ok && plainJSON(v)
	}
	str(`{"rollout":`, w.Rollout)
	str(`,"rev":`, w.Revision)
	b = strconv.AppendInt(append(b, `,"at":`...), w.PatchedAt, 10)
	if w.Label != "" {
		str(`,"label":`, w.Label)
	}
	b = append(b, `,"before":`...)
	if w.Before == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, c := range w.Before {
			if i > 0 {
				b = append(b, ',')
			}
			str(`{"name":`, c.Name)
			if c.Init {
				b = append(b, `,"init":true`...)
			}
			str(`,"image":`, c.Image)
			if c.ImageID != "" {
				str(`,"imageID":`, c.ImageID)
			}
			if !c.ContainerID.IsZero() {
				str(`,"containerID":`, c.ContainerID.String())
			}
			b = strconv.AppendInt(append(b, `,"restarts":`...), int64(c.Restarts), 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}'), ok
}

// plainJSON: s is written in JSON as it is, by encoding/json too
// (printable ASCII but the quote, the backslash and the three it escapes
// for HTML).
func plainJSON(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// parseStateJSON reads raw into w as json.Unmarshal would; encoding/json
// reads what the fast path does not take (stateReader).
func parseStateJSON(raw string, w *stateWire) error {
	r := stateReader{s: raw}
	if r.wire(w) {
		return nil
	}
	*w = stateWire{}
	return json.Unmarshal([]byte(raw), w)
}

// stateReader reads the form appendJSON writes, exactly, and nothing
// else: any other spacing, order, escape or number form fails it, and
// encoding/json reads the text instead. So whatever it takes,
// json.Unmarshal would read the same.
type stateReader struct {
	s   string
	off int
	bad bool
}

// peek: the input goes on with l (taken if so).
func (r *stateReader) peek(l string) bool {
	if !r.bad && strings.HasPrefix(r.s[r.off:], l) {
		r.off += len(l)
		return true
	}
	return false
}

// lit takes l, which must come next.
func (r *stateReader) lit(l string) {
	if !r.peek(l) {
		r.bad = true
	}
}

// str reads a string of plain characters, its quotes included.
func (r *stateReader) str() string {
	r.lit(`"`)
	if r.bad {
		return ""
	}
	start := r.off
	for r.off < len(r.s) && r.s[r.off] != '"' {
		r.off++
	}
	v := r.s[start:r.off]
	if r.off == len(r.s) || !plainJSON(v) {
		r.bad = true
		return ""
	}
	r.off++
	return v
}

// int reads a JSON integer in [lo, hi]: digits with no leading zero.
func (r *stateReader) int(lo, hi int64) int64 {
	if r.bad {
		return 0
	}
	start := r.off
	if r.off < len(r.s) && r.s[r.off] == '-' {
		r.off++
	}
	digits := r.off
	for r.off < len(r.s) && r.s[r.off] >= '0' && r.s[r.off] <= '9' {
		r.off++
	}
	if r.off == digits || r.s[digits] == '0' && r.off-digits > 1 {
		r.bad = true
		return 0
	}
	n, err := strconv.ParseInt(r.s[start:r.off], 10, 64)
	if err != nil || n < lo || n > hi {
		r.bad = true
		return 0
	}
	return n
}

func (r *stateReader) wire(w *stateWire) bool {
	r.lit(`{"rollout":`)
	w.Rollout = r.str()
	r.lit(`,"rev":`)
	w.Revision = r.str()
	r.lit(`,"at":`)
	w.PatchedAt = r.int(-1<<63, 1<<63-1)
	if r.peek(`,"label":`) {
		w.Label = r.str()
	}
	r.lit(`,"before":`)
	switch {
	case r.peek("null"):
	case r.peek("[]"):
		w.Before = []ContainerBefore{}
	default:
		r.lit("[")
		for !r.bad {
			var c ContainerBefore
			r.lit(`{"name":`)
			c.Name = r.str()
			c.Init = r.peek(`,"init":true`)
			r.lit(`,"image":`)
			c.Image = r.str()
			if r.peek(`,"imageID":`) {
				c.ImageID = r.str()
			}
			if r.peek(`,"containerID":`) {
				c.ContainerID = ParseContainerID(r.str())
			}
			r.lit(`,"restarts":`)
			c.Restarts = int32(r.int(-1<<31, 1<<31-1))
			r.lit("}")
			w.Before = append(w.Before, c)
			if !r.peek(",") {
				break
			}
		}
		r.lit("]")
	}
	r.lit("}")
	return !r.bad && r.off == len(r.s)
}
