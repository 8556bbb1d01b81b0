package journal

import (
	"bytes"
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// canonReader reads the CBOR that encMode writes, and nothing else: every
// head in its shortest form, definite lengths, map keys in strictly
// increasing encoded order, no tags, valid UTF-8. It is the fast path of
// the hot decoders (the record envelope, Observed, ActionFact): on any
// input outside that subset it sets bad, and the caller decodes the same
// bytes again with decMode, which accepts or refuses them with its error.
//
// Invariant: whenever a fast decoder finishes with bad unset, decMode
// decodes the same bytes to a value equal to the fast decoder's
// (TestCanonicalDecodersAgree checks it on encoded and mutated records).
// So the fast path changes speed, never what a journal reads as.
type canonReader struct {
	b   []byte
	off int
	bad bool
	// in interns short strings (nil: none).
	in *interner
}

// CBOR major types.
const (
	majUint  = 0
	majNeg   = 1
	majBytes = 2
	majText  = 3
	majArray = 4
	majMap   = 5
	majOther = 7
)

const (
	cborFalse = 0xf4
	cborTrue  = 0xf5
	cborNull  = 0xf6
)

// head reads an item's head: its major type and argument. A head not in
// its shortest form, an indefinite length or a reserved value is bad.
func (r *canonReader) head() (major byte, arg uint64) {
	if r.bad || r.off >= len(r.b) {
		r.bad = true
		return 0, 0
	}
	c := r.b[r.off]
	r.off++
	major, info := c>>5, c&0x1f
	var n int
	switch {
	case info < 24:
		return major, uint64(info)
	case info == 24:
		n = 1
	case info == 25:
		n = 2
	case info == 26:
		n = 4
	case info == 27:
		n = 8
	default:
		r.bad = true
		return 0, 0
	}
	if len(r.b)-r.off < n {
		r.bad = true
		return 0, 0
	}
	for _, x := range r.b[r.off : r.off+n] {
		arg = arg<<8 | uint64(x)
	}
	r.off += n
	// Shortest form: a value that fits a smaller head is not canonical.
	var min uint64
	switch n {
	case 1:
		min = 24
	case 2:
		min = 1 << 8
	case 4:
		min = 1 << 16
	case 8:
		min = 1 << 32
	}
	if arg < min {
		r.bad = true
	}
	return major, arg
}

// peek returns the next byte (0 at the end, with bad set by the next read).
func (r *canonReader) peek() byte {
	if r.off < len(r.b) {
		return r.b[r.off]
	}
	return 0
}

func (r *canonReader) uint() uint64 {
	m, a := r.head()
	if m != majUint {
		r.bad = true
	}
	return a
}

func (r *canonReader) int64() int64 {
	m, a := r.head()
	switch {
	case a > math.MaxInt64:
		r.bad = true
	case m == majUint:
		return int64(a)
	case m == majNeg:
		return -1 - int64(a)
	default:
		r.bad = true
	}
	return 0
}

func (r *canonReader) int32() int32 {
	v := r.int64()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.bad = true
		return 0
	}
	return int32(v)
}

func (r *canonReader) bool() bool {
	switch r.peek() {
	case cborFalse:
		r.off++
		return false
	case cborTrue:
		r.off++
		return true
	}
	r.bad = true
	return false
}

// raw returns the bytes of a string of major type m, aliasing the input.
func (r *canonReader) raw(m byte) []byte {
	major, n := r.head()
	if major != m || n > uint64(len(r.b)-r.off) {
		r.bad = true
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *canonReader) text() string {
	s := r.raw(majText)
	if r.bad {
		return ""
	}
	var slot *string
	if r.in != nil {
		// A string the interner holds was valid UTF-8 when it was kept:
		// most of a record's strings are, and only the others are checked.
		// (Comparing a string with string(s) does not allocate.)
		if slot = r.in.slot(s); slot != nil && *slot == string(s) {
			return *slot
		}
	}
	if !utf8.Valid(s) {
		r.bad = true
		return ""
	}
	if len(s) == 0 {
		return ""
	}
	v := string(s)
	if slot != nil {
		*slot = v // kept for the next
	}
	return v
}

// bytes reads a byte string into a copy; CBOR null reads as nil, as
// decMode reads it into a []byte.
func (r *canonReader) bytes() []byte {
	if r.peek() == cborNull {
		r.off++
		return nil
	}
	s := r.raw(majBytes)
	if r.bad {
		return nil
	}
	return append(make([]byte, 0, len(s)), s...)
}

// count reads an array's or map's head and bounds its entries by what the
// rest of the input can hold (each entry takes at least one byte), so a
// forged count cannot make the caller allocate.
func (r *canonReader) count(m byte) int {
	major, n := r.head()
	if major != m || n > uint64(len(r.b)-r.off) || n > maxPairs {
		r.bad = true
		return 0
	}
	return int(n)
}

// keys walks a map with unsigned integer keys (the keyasint structs),
// calling field for each key in turn; keys must strictly increase, which
// is their canonical order and rules out duplicates. field returns false
// for a key it does not know.
func (r *canonReader) keys(field func(k uint64) bool) {
	n := r.count(majMap)
	var last uint64
	for i := 0; i < n && !r.bad; i++ {
		k := r.uint()
		if r.bad || (i > 0 && k <= last) || !field(k) {
			r.bad = true
			return
		}
		last = k
	}
}

// stringMap reads a map of text to text; encoded keys must strictly
// increase (canonical order, no duplicates). With an interner, a map
// encoded exactly as one read before is that same map (see shared).
func (r *canonReader) stringMap() map[string]string {
	if r.in == nil || r.bad {
		return r.readStringMap()
	}
	start := r.off
	if end, ok := r.skipStringMap(); ok && end-start <= internMaxMap {
		if m, hit := r.in.sharedMap(r.b[start:end]); hit {
			r.off = end
			return m
		}
	}
	r.off = start
	m := r.readStringMap()
	if !r.bad && r.off-start <= internMaxMap {
		r.in.keepMap(r.b[start:r.off], m)
	}
	return m
}

// skipStringMap returns where the map of text to text at r.off ends,
// without reading it; ok is false if it is not one (r is left to be
// rewound by the caller).
func (r *canonReader) skipStringMap() (end int, ok bool) {
	n := r.count(majMap)
	for i := 0; i < 2*n && !r.bad; i++ {
		r.raw(majText)
	}
	if r.bad {
		r.bad = false
		return 0, false
	}
	return r.off, true
}

func (r *canonReader) readStringMap() map[string]string {
	n := r.count(majMap)
	if r.bad {
		return nil
	}
	m := make(map[string]string, n)
	var lastKey []byte
	for i := 0; i < n && !r.bad; i++ {
		start := r.off
		k := r.text()
		enc := r.b[start:r.off]
		if i > 0 && bytes.Compare(enc, lastKey) <= 0 {
			r.bad = true
		}
		lastKey = enc
		m[k] = r.text()
	}
	return m
}

// strings reads a list of text; with an interner, one encoded exactly as
// one read before is that same list (every pod of a fleet declares the
// same readiness gates and has the same annotation keys).
func (r *canonReader) strings() []string {
	start := r.off
	out := r.readStrings()
	if r.in == nil || r.bad || len(out) == 0 || r.off-start > internMaxList {
		return out
	}
	return r.in.shareList(r.b[start:r.off], out)
}

func (r *canonReader) readStrings() []string {
	n := r.count(majArray)
	if r.bad {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.text()
	}
	return out
}

// end marks trailing bytes bad (decMode refuses them).
func (r *canonReader) end() {
	if r.off != len(r.b) {
		r.bad = true
	}
}

// interner shares the bytes of equal short strings read by one decoder:
// the same labels, images, node names, condition types and reasons come
// back in every record of a fleet. It is a fixed-size cache indexed by a
// hash (a miss replaces the slot), so strings seen once (UIDs, versions)
// cost no more than without it and it never grows.
//
// It shares small maps the same way, by their encoded bytes: a fleet's
// containers have the same requests and limits. And owner references: a
// workload's pods name the same owner.
type interner struct {
	slots  [internSlots]string
	maps   [internMapSlots]sharedMap
	owners [internOwnerSlots]sharedOwner
	lists  [internListSlots]sharedList
}

type sharedList struct {
	enc string
	l   []string
}

type sharedOwner struct {
	enc string
	o   *OwnerRef
}

type sharedMap struct {
	enc string
	m   map[string]string
}

const (
	internSlots = 1 << 12
	// An image ID (a registry path and a sha256 digest) runs past 64
	// bytes and is the same on every pod of a fleet.
	internMaxLen   = 160
	internMapSlots = 1 << 8
	internMaxMap   = 256
	// A fleet has a few workloads per namespace.
	internOwnerSlots = 1 << 6
	// Lists of a pod's readiness gates or annotation keys: a few shapes
	// per fleet.
	internListSlots = 1 << 6
	internMaxList   = 256
)

// slotHash places b in the interner's tables. It reads eight bytes at a
// step: FNV a byte at a time was a fifth of a record's decoding in
// replay, every interned string and shared map hashed. A slot only
// caches (a miss replaces it, and a hit is checked byte for byte), so the
// hash need only spread keys well: a crafted collision costs a miss.
func slotHash(b []byte) uint32 {
	h := uint64(len(b)) * 0x9e3779b97f4a7c15
	for ; len(b) >= 8; b = b[8:] {
		h = (h ^ binary.LittleEndian.Uint64(b)) * 0xff51afd7ed558ccd
		h ^= h >> 32
	}
	var tail uint64
	for i, c := range b {
		tail |= uint64(c) << (8 * i)
	}
	h ^= tail
	// murmur3's finalizer: every bit of the state moves the slot's.
	h = (h ^ h>>33) * 0xff51afd7ed558ccd
	h = (h ^ h>>33) * 0xc4ceb9fe1a85ec53
	return uint32(h ^ h>>33)
}

func (in *interner) sharedMap(enc []byte) (map[string]string, bool) {
	e := &in.maps[slotHash(enc)&(internMapSlots-1)]
	if e.m != nil && e.enc == string(enc) {
		return e.m, true
	}
	return nil, false
}

func (in *interner) keepMap(enc []byte, m map[string]string) {
	in.maps[slotHash(enc)&(internMapSlots-1)] = sharedMap{enc: string(enc), m: m}
}

// shareOwner returns the OwnerRef encoded as enc read before, or o
// (which it keeps for the next).
func (in *interner) shareOwner(enc []byte, o *OwnerRef) *OwnerRef {
	e := &in.owners[slotHash(enc)&(internOwnerSlots-1)]
	if e.o != nil && e.enc == string(enc) {
		return e.o
	}
	*e = sharedOwner{enc: string(enc), o: o}
	return o
}

// shareList returns the list encoded as enc read before, or l (which it
// keeps for the next).
func (in *interner) shareList(enc []byte, l []string) []string {
	e := &in.lists[slotHash(enc)&(internListSlots-1)]
	if e.l != nil && e.enc == string(enc) {
		return e.l
	}
	*e = sharedList{enc: string(enc), l: l}
	return l
}

// slot is where the interner keeps a string read as b; nil for one it
// does not keep (empty, or longer than internMaxLen). Only text keeps
// strings there, each valid UTF-8.
func (in *interner) slot(b []byte) *string {
	if len(b) == 0 || len(b) > internMaxLen {
		return nil
	}
	return &in.slots[slotHash(b)&(internSlots-1)]
}
