package journal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

type plainInner struct {
	A  string
	Bb map[string]int
	c  int // unexported: not encoded
}

type plainOuter struct {
	Seq                                 uint64
	Now                                 int64
	Inner                               *plainInner
	NilInner                            *plainInner
	Values                              map[string]plainInner
	Pointers                            map[string]*plainInner
	ByInt                               map[int64]string
	ByUint                              map[uint16][]byte
	Nested                              map[string]map[string]bool
	Any                                 map[string]any
	Tagged                              map[string]taggedStruct
	Embeds                              map[string]embedding
	When                                map[string]time.Time
	Texts                               map[textKey]int
	Raw                                 cbor.RawMessage
	Empty                               map[string]int
	Nil                                 map[string]int
	AFieldNameLongerThanTwentyFourBytes int
}

type taggedStruct struct {
	X int    `cbor:"1,keyasint"`
	Y string `cbor:"2,keyasint,omitempty"`
}

type embedding struct {
	taggedStruct
	Z int
}

type textKey string

func (k textKey) MarshalText() ([]byte, error) { return []byte("k:" + string(k)), nil }

// TestPieceEncoderMatchesMarshal: the piece encoder writes, whatever the
// pieces are taken away at, byte for byte what the library writes for the
// whole value: core deterministic order for the maps and structs it walks
// (string keys of every length class, negative and unsigned integer keys),
// and the library's own encoding for everything it does not walk (tags,
// embedding, marshalling methods, nil and empty maps).
func TestPieceEncoderMatchesMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func() string {
		n := []int{0, 1, 5, 23, 24, 30, 255, 256, 300}[rng.IntN(9)]
		return strings.Repeat(string(rune('a'+rng.IntN(26))), n) + fmt.Sprint(rng.IntN(1000))
	}
	v := plainOuter{
		Seq: 1 << 40, Now: -5, Inner: &plainInner{A: "a", Bb: map[string]int{"z": 1, "aa": 2, "b": 3}, c: 9},
		Values: map[string]plainInner{}, Pointers: map[string]*plainInner{"nil": nil}, ByInt: map[int64]string{},
		ByUint: map[uint16][]byte{}, Nested: map[string]map[string]bool{}, Any: map[string]any{"n": nil, "m": map[string]any{"y": 1, "x": []any{"q"}}, "f": 1.5},
		Tagged: map[string]taggedStruct{"t": {X: 1}, "u": {X: 2, Y: "y"}}, Embeds: map[string]embedding{"e": {taggedStruct{X: 3}, 4}},
		When: map[string]time.Time{"then": time.Unix(1_800_000_000, 5).UTC()}, Texts: map[textKey]int{"b": 1, "a": 2},
		Raw: cbor.RawMessage{0x83, 0x01, 0x02, 0x03}, Empty: map[string]int{}, AFieldNameLongerThanTwentyFourBytes: 1,
	}
	for i := range 500 {
		v.Values[word()] = plainInner{A: word(), Bb: map[string]int{word(): i}}
		v.Pointers[word()] = &plainInner{A: word()}
		v.ByInt[rng.Int64N(1<<40)-1<<39] = word()
		v.ByUint[uint16(rng.IntN(1<<16))] = []byte(word())
		v.Nested[word()] = map[string]bool{word(): true, word(): false}
	}
	for _, val := range []any{v, &v, v.Values, v.Nested, v.Inner, (*plainInner)(nil), map[string]int(nil), map[string]int{}, 7, "s", nil, []int{1, 2}} {
		want, err := encMode.Marshal(val)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeCheckpoint(val)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%T: the piece encoder wrote %d bytes that differ from the library's %d", val, len(got), len(want))
		}
		// Taken away in small pieces as it goes: the same bytes.
		var out, buf bytes.Buffer
		e := pieceEncoder{buf: &buf, flush: func() error {
			if buf.Len() >= 100 {
				out.Write(buf.Next(100))
			}
			return nil
		}}
		if err := e.encode(reflect.ValueOf(val)); err != nil {
			t.Fatal(err)
		}
		out.Write(buf.Bytes())
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%T: in pieces the piece encoder wrote bytes that differ from the library's", val)
		}
	}
}
