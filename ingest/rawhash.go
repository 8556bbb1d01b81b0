package ingest

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"sync"
)

// rawObjectHash is objectHash of the object the unstructured decoding
// makes of data, computed from data itself: the object's JSON is parsed
// once into spans of its bytes (jsonNode), and written as encoding/json
// writes the map — keys sorted, strings escaped its way, numbers as the
// decoding's int64 or float64 would print — without making the map (P2:
// decoding each watched pod into a map only to hash it and convert it
// to a typed pod was half of the controller's CPU).
//
// ok is false for anything it does not write exactly as objectHash would:
// JSON that is not valid, a top level that is not an object or has
// "items" (the unstructured decoding makes a list of it), duplicate keys
// (the map keeps the last), a number out of float64's range. The caller
// then decodes the map, and fails or hashes as before.
func rawObjectHash(data []byte) (sum [32]byte, ok bool) {
	if len(data) > math.MaxInt32 { // its offsets are int32s
		return sum, false
	}
	p := parsers.Get().(*jsonParser)
	defer p.release()
	p.data, p.nodes, p.members = data, p.nodes[:0], p.members[:0]
	i, ok := p.value(p.space(0), 0)
	if !ok || p.space(i) != len(data) || len(p.nodes) == 0 || p.nodes[0].kind != '{' || p.hasItems() {
		return sum, false
	}
	e := encoders.Get().(*hashEncoder)
	defer encoders.Put(e)
	e.h.Reset()
	e.buf = e.buf[:0]
	if _, ok := p.write(e, 0); !ok {
		return sum, false
	}
	e.buf = append(e.buf, '\n') // json.Encoder's, as objectHash
	e.flush()
	e.h.Sum(sum[:0])
	return sum, true
}

// parsers are reused, as encoders: a watch parses thousands of objects a
// second.
var parsers = sync.Pool{New: func() any { return &jsonParser{nodes: make([]jsonNode, 0, 512)} }}

// jsonNode is one value of the document: its kind (the first byte of its
// JSON, '0' for a number), its bytes [v0, v1), and for a member of an
// object its key's bytes inside the quotes [k0, k1). end is the index of
// the node after its subtree: its next sibling.
type jsonNode struct {
	v0, v1, k0, k1, end int32
	kind                byte
	// plain: a string (or key) written back exactly as it is, quotes
	// and all: printable ASCII with nothing encoding/json escapes.
	plain, keyPlain bool
}

type jsonParser struct {
	data  []byte
	nodes []jsonNode
	// members is scratch for sorting one object's members.
	members []int32
}

// release returns p to the pool unless a huge object grew it: the pool
// keeps what a pod needs, not what the largest object ever served did.
func (p *jsonParser) release() {
	p.data = nil
	if cap(p.nodes) <= 1<<14 && cap(p.members) <= 1<<14 {
		parsers.Put(p)
	}
}

// maxDepth bounds nesting, as encoding/json's own limit does, so a
// hostile object cannot exhaust the stack.
const maxDepth = 10000

func (p *jsonParser) space(i int) int {
	for i < len(p.data) {
		switch p.data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value parses the value at i (no space before it) into a node and
// returns where it ends.
func (p *jsonParser) value(i, depth int) (int, bool) {
	if i >= len(p.data) || depth > maxDepth {
		return i, false
	}
	n := len(p.nodes)
	p.nodes = append(p.nodes, jsonNode{v0: int32(i), kind: p.data[i]})
	var ok bool
	switch c := p.data[i]; {
	case c == '{':
		i, ok = p.object(i+1, depth)
	case c == '[':
		i, ok = p.array(i+1, depth)
	case c == '"':
		var plain bool
		i, plain, ok = p.str(i)
		p.nodes[n].plain = plain
	case c == '-' || c >= '0' && c <= '9':
		p.nodes[n].kind = '0'
		i, ok = p.number(i)
	case c == 't':
		i, ok = p.literal(i, "true")
	case c == 'f':
		i, ok = p.literal(i, "false")
	case c == 'n':
		i, ok = p.literal(i, "null")
	}
	p.nodes[n].v1, p.nodes[n].end = int32(i), int32(len(p.nodes))
	return i, ok
}

func (p *jsonParser) object(i, depth int) (int, bool) {
	i = p.space(i)
	if i < len(p.data) && p.data[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(p.data) || p.data[i] != '"' {
			return i, false
		}
		k0 := i
		var keyPlain, ok bool
		if i, keyPlain, ok = p.str(i); !ok {
			return i, false
		}
		k1 := i
		if i = p.space(i); i >= len(p.data) || p.data[i] != ':' {
			return i, false
		}
		n := len(p.nodes)
		if i, ok = p.value(p.space(i+1), depth+1); !ok {
			return i, false
		}
		p.nodes[n].k0, p.nodes[n].k1, p.nodes[n].keyPlain = int32(k0+1), int32(k1-1), keyPlain
		var more bool
		if i, more, ok = p.after(i, '}'); !ok || !more {
			return i, ok
		}
	}
}

func (p *jsonParser) array(i, depth int) (int, bool) {
	i = p.space(i)
	if i < len(p.data) && p.data[i] == ']' {
		return i + 1, true
	}
	for {
		var ok, more bool
		if i, ok = p.value(i, depth+1); !ok {
			return i, false
		}
		if i, more, ok = p.after(i, ']'); !ok || !more {
			return i, ok
		}
	}
}

// after reads what follows a member or an item at i: a comma (more
// follow, from the returned index) or the closing bracket (the container
// ends before the returned index).
func (p *jsonParser) after(i int, closing byte) (next int, more, ok bool) {
	if i = p.space(i); i >= len(p.data) {
		return i, false, false
	}
	switch p.data[i] {
	case ',':
		return p.space(i + 1), true, true
	case closing:
		return i + 1, false, true
	}
	return i, false, false
}

// str reads the string at i (at its quote) and returns where it ends;
// plain says encoding/json would write its text back unchanged.
func (p *jsonParser) str(i int) (end int, plain, ok bool) {
	plain = true
	for i++; i < len(p.data); i++ {
		switch c := p.data[i]; {
		case c == '"':
			return i + 1, plain, true
		case c < 0x20:
			return i, false, false
		case c == '\\':
			plain = false
			if i++; i >= len(p.data) {
				return i, false, false
			}
			switch p.data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(p.data) {
					return i, false, false
				}
				for _, h := range p.data[i+1 : i+5] {
					if !isHex(h) {
						return i, false, false
					}
				}
				i += 4
			default:
				return i, false, false
			}
		case c >= 0x80 || c == '<' || c == '>' || c == '&':
			// Written differently (escaped, or U+FFFD for a byte that
			// is not UTF-8): unquoted and written by hashEncoder.string.
			plain = false
		}
	}
	return i, false, false
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// number reads a number of JSON's grammar at i.
func (p *jsonParser) number(i int) (int, bool) {
	d := p.data
	if d[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case !digits():
		return i, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if !digits() {
			return i, false
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			return i, false
		}
	}
	return i, true
}

func (p *jsonParser) literal(i int, lit string) (int, bool) {
	if !bytes.HasPrefix(p.data[i:], []byte(lit)) {
		return i, false
	}
	return i + len(lit), true
}

// hasItems: the top-level object has an "items" member, or a key
// written with escapes that might spell it.
func (p *jsonParser) hasItems() bool {
	for c := int32(1); c < p.nodes[0].end; c = p.nodes[c].end {
		if !p.nodes[c].keyPlain || string(p.data[p.nodes[c].k0:p.nodes[c].k1]) == "items" {
			return true
		}
	}
	return false
}

// write writes node n as encoding/json writes its decoded value, and
// returns the node after its subtree.
func (p *jsonParser) write(e *hashEncoder, n int32) (int32, bool) {
	e.grow()
	nd := p.nodes[n]
	raw := p.data[nd.v0:nd.v1]
	switch nd.kind {
	case '{':
		return nd.end, p.writeObject(e, n)
	case '[':
		e.buf = append(e.buf, '[')
		for c := n + 1; c < nd.end; c = p.nodes[c].end {
			if c > n+1 {
				e.buf = append(e.buf, ',')
			}
			if _, ok := p.write(e, c); !ok {
				return nd.end, false
			}
		}
		e.buf = append(e.buf, ']')
	case '"':
		if nd.plain {
			e.buf = append(e.buf, raw...)
		} else {
			s, ok := unescape(raw)
			if !ok {
				return nd.end, false
			}
			e.string(s)
		}
	case '0':
		// As the decoding's PreserveInts: an int64 when the literal has
		// no point and fits, else a float64.
		s := string(raw)
		if !bytes.ContainsRune(raw, '.') {
			if v, err := strconv.ParseInt(s, 10, 64); err == nil {
				e.buf = strconv.AppendInt(e.buf, v, 10)
				return nd.end, true
			}
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || e.float(f) != nil {
			return nd.end, false
		}
	default: // true, false, null
		e.buf = append(e.buf, raw...)
	}
	return nd.end, true
}

// writeObject writes object n's members sorted by key, as encoding/json
// writes a map.
func (p *jsonParser) writeObject(e *hashEncoder, n int32) bool {
	first := len(p.members)
	plain := true
	for c := n + 1; c < p.nodes[n].end; c = p.nodes[c].end {
		p.members = append(p.members, c)
		plain = plain && p.nodes[c].keyPlain
	}
	members := p.members[first:]
	defer func() { p.members = p.members[:first] }()
	key := func(c int32) []byte { return p.data[p.nodes[c].k0:p.nodes[c].k1] }
	if !plain {
		// A key with an escape or a byte past ASCII: sort and write the
		// keys decoded. Rare; kept simple.
		return p.writeObjectDecoded(e, members)
	}
	slices.SortFunc(members, func(a, b int32) int { return bytes.Compare(key(a), key(b)) })
	e.buf = append(e.buf, '{')
	for i, c := range members {
		if i > 0 {
			if bytes.Equal(key(members[i-1]), key(c)) {
				return false // a duplicate: the map keeps only the last
			}
			e.buf = append(e.buf, ',')
		}
		e.buf = append(e.buf, '"')
		e.buf = append(e.buf, key(c)...)
		e.buf = append(e.buf, '"', ':')
		if _, ok := p.write(e, c); !ok {
			return false
		}
	}
	e.buf = append(e.buf, '}')
	return true
}

func (p *jsonParser) writeObjectDecoded(e *hashEncoder, members []int32) bool {
	keys := make([]string, len(members))
	for i, c := range members {
		k, ok := unescape(p.data[p.nodes[c].k0-1 : p.nodes[c].k1+1])
		if !ok {
			return false
		}
		keys[i] = k
	}
	order := make([]int, len(members))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case keys[a] < keys[b]:
			return -1
		case keys[a] > keys[b]:
			return 1
		}
		return 0
	})
	e.buf = append(e.buf, '{')
	for i, o := range order {
		if i > 0 {
			if keys[order[i-1]] == keys[o] {
				return false
			}
			e.buf = append(e.buf, ',')
		}
		e.string(keys[o])
		e.buf = append(e.buf, ':')
		if _, ok := p.write(e, members[o]); !ok {
			return false
		}
	}
	e.buf = append(e.buf, '}')
	return true
}

// unquote decodes a JSON string literal as encoding/json does (a byte
// that is not UTF-8 becomes U+FFFD).
func unquote(lit []byte) (string, bool) {
	var s string
	return s, json.Unmarshal(lit, &s) == nil
}

// unescape is unquote for a literal jsonParser.str checked, quicker for
// ASCII text whose escapes are single characters: the keys of managed
// fields ("k:{\"name\":\"app\"}") are most of a served pod's escaped
// strings.
func unescape(lit []byte) (string, bool) {
	text := lit[1 : len(lit)-1]
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= 0x80 {
			return unquote(lit) // not ASCII: encoding/json's way
		}
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch text[i] {
		case '"', '\\', '/':
			out = append(out, text[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		default: // \u…
			return unquote(lit)
		}
	}
	return string(out), true
}
