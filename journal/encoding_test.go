package journal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func sampleObserved() Observed {
	return Observed{
		Resource:        "pods",
		Namespace:       "shop",
		Name:            "web-0",
		UID:             "6f1c",
		ResourceVersion: "4711",
		Labels:          map[string]string{"app": "web", "tier": "canary", "zone": "a"},
		Annotations:     map[string]string{"rollbook.dev/rollout": "web-2-0"},
		Owner:           &OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "9a"},
		Created:         1700000000000000000,
		Pod: &PodFacts{
			NodeName:       "node-1",
			Phase:          "Running",
			ReadinessGates: []string{"rollbook.dev/InPlaceUpdateReady"},
			Conditions:     []Condition{{Type: "Ready", Status: "True", LastTransition: 1700000001000000000}},
			Containers: []Container{{
				Name: "app", Image: "registry.example/web:1.0", ImageID: "sha256:aa", ContainerID: "containerd://1",
				RestartCount: 2, Ready: true, Started: true, State: "running",
				Requests: map[string]string{"cpu": "500m", "memory": "256Mi"},
			}},
		},
	}
}

// TestBodyRoundTrip: a body decodes to exactly the value encoded.
func TestBodyRoundTrip(t *testing.T) {
	in := sampleObserved()
	b, err := EncodeBody(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Observed
	if err := DecodeBody(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the value:\n in  %+v\n out %+v", in, out)
	}
	for _, v := range []any{
		Vanished{Resource: "pods", Namespace: "shop", Name: "web-1", UID: "u", LastResourceVersion: "1", ListResourceVersion: "9"},
		CursorFact{Name: "watch/pods", ResourceVersion: "812"},
	} {
		b, err := EncodeBody(v)
		if err != nil {
			t.Fatal(err)
		}
		out := reflect.New(reflect.TypeOf(v))
		if err := DecodeBody(b, out.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(v, out.Elem().Interface()) {
			t.Fatalf("round trip of %T changed it: %+v", v, out.Elem().Interface())
		}
	}
}

// TestBodyDeterministic: equal values encode to equal bytes whatever the
// map insertion order, and maps come out sorted (core deterministic).
func TestBodyDeterministic(t *testing.T) {
	first, err := EncodeBody(sampleObserved())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		o := sampleObserved()
		// Rebuild the maps in another insertion order.
		o.Labels = map[string]string{}
		for _, k := range []string{"zone", "tier", "app"}[i%3:] {
			o.Labels[k] = sampleObserved().Labels[k]
		}
		for _, k := range []string{"zone", "tier", "app"}[:i%3] {
			o.Labels[k] = sampleObserved().Labels[k]
		}
		b, err := EncodeBody(o)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, b) {
			t.Fatalf("encoding %d differs:\n%x\n%x", i, first, b)
		}
	}
	m, err := EncodeBody(map[string]int{"b": 1, "a": 2, "aa": 3})
	if err != nil {
		t.Fatal(err)
	}
	// Core deterministic order is bytewise on the encoded keys: shorter first.
	if want := "a3616102616201626161" + "03"; hex.EncodeToString(m) != want {
		t.Fatalf("map encoding %x, want %s", m, want)
	}
}

// TestDecodeBodyRejectsMalformed: truncated input, trailing bytes,
// duplicate keys, unknown fields, indefinite lengths and tags are errors
// wrapping ErrCorrupt, not best-effort values.
func TestDecodeBodyRejectsMalformed(t *testing.T) {
	good, err := EncodeBody(CursorFact{Name: "n", ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte(nil), good...), 0x00),
		"duplicate key": {0xa2, 0x01, 0x61, 'n', 0x01, 0x61, 'm'},
		"unknown field": {0xa2, 0x01, 0x61, 'n', 0x09, 0x61, 'x'},
		"indefinite":    {0xbf, 0x01, 0x61, 'n', 0xff},
		"tag":           {0xc0, 0xa1, 0x01, 0x61, 'n'},
		"bad utf8":      {0xa1, 0x01, 0x61, 0xff},
		"wrong type":    {0xa1, 0x01, 0x05},
		"empty":         {},
	}
	for name, b := range cases {
		var v CursorFact
		err := DecodeBody(b, &v)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v, want ErrCorrupt", name, err)
		}
	}
	var v CursorFact
	if err := DecodeBody(good, &v); err != nil || v.Name != "n" {
		t.Fatalf("good body: %v %+v", err, v)
	}
}

func sampleRecord() Record {
	return Record{
		Seq:  7,
		Time: time.Unix(1700000000, 123456789).UTC(),
		Kind: KindTick,
		Key:  "tick",
		Body: []byte{0xa0},
		Prev: [32]byte{1, 2, 3},
	}
}

// TestRecordGolden pins the stored format: if these bytes change, journals
// written before the change no longer verify, so FormatVersion must move.
func TestRecordGolden(t *testing.T) {
	r := sampleRecord()
	v, h, err := encodeRecord(&r)
	if err != nil {
		t.Fatal(err)
	}
	const wantValue = "0186071b17979cfe3d85cd1503647469636b41a058200102030000000000000000000000000000000000000000000000000000000000ffc18160"
	const wantHash = "ed5b6f74a7e95e33034bd89dc761eef04d6c5529c1c80db53527eaf047339622"
	if got := hex.EncodeToString(v); got != wantValue {
		t.Errorf("stored value changed:\n got  %s\n want %s", got, wantValue)
	}
	if got := hex.EncodeToString(h[:]); got != wantHash {
		t.Errorf("hash changed:\n got  %s\n want %s", got, wantHash)
	}
	// Encoding is deterministic and decoding gives the record back, hash included.
	v2, _, _ := encodeRecord(&r)
	if !bytes.Equal(v, v2) {
		t.Fatal("two encodings of one record differ")
	}
	got, err := DecodeRecord(v)
	if err != nil {
		t.Fatal(err)
	}
	r.Hash = h
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("decode: got %+v, want %+v", got, r)
	}
}

// reframe returns value with its envelope replaced and the CRC recomputed,
// so only the envelope is wrong.
func reframe(t *testing.T, env any) []byte {
	t.Helper()
	b, err := cbor.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return frame(b)
}

// TestDecodeRecordErrors: a flipped bit, a truncated value, an unknown
// version and an unknown kind are errors matched with errors.Is, with the
// package prefix.
func TestDecodeRecordErrors(t *testing.T) {
	r := sampleRecord()
	v, _, err := encodeRecord(&r)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), v...)
	flipped[len(flipped)/2] ^= 0x10
	version := append([]byte(nil), v...)
	version[0] = 2
	prev := r.Prev
	cases := []struct {
		name  string
		value []byte
		want  error
	}{
		{"flipped bit", flipped, ErrCorrupt},
		{"truncated", v[:len(v)-3], ErrCorrupt},
		{"short", v[:3], ErrCorrupt},
		{"unknown version", version, ErrCorrupt},
		{"unknown kind", reframe(t, envelope{Seq: 7, Time: 1, Kind: 200, Key: "k", Prev: prev[:]}), ErrUnknownKind},
		{"short prev", reframe(t, envelope{Seq: 7, Time: 1, Kind: 3, Key: "k", Prev: prev[:31]}), ErrCorrupt},
		{"extra field", reframe(t, []any{7, 1, 3, "k", nil, prev[:], "x"}), ErrCorrupt},
	}
	for _, c := range cases {
		_, err := DecodeRecord(c.value)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
			continue
		}
		if err.Error()[:9] != "journal: " {
			t.Errorf("%s: error %q lacks the package prefix", c.name, err)
		}
	}
}

// TestUnknownKindIsAnError: Append refuses a kind this binary does not
// know and writes nothing, and encoding such a record fails too.
func TestUnknownKindIsAnError(t *testing.T) {
	j, _ := openTemp(t, Options{})
	_, err := j.Append(testCtx(t), nil, entry(t, 1), Entry{Kind: Kind(42), Key: "pods/x/y"})
	if !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("append: got %v, want ErrUnknownKind", err)
	}
	if seq, _ := j.Last(); seq != 0 {
		t.Fatalf("a refused append wrote records up to %d", seq)
	}
	r := Record{Seq: 1, Kind: Kind(0), Key: "k"}
	if _, _, err := encodeRecord(&r); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("encode: got %v, want ErrUnknownKind", err)
	}
	if Kind(42).String() != "Kind(42)" || KindActionFailed.String() != "ActionFailed" {
		t.Fatal("Kind.String")
	}
}

// TestWhatIsEncodedDecodes: the largest body the encoder accepts decodes;
// a larger one is refused at encoding, never stored to fail later.
func TestWhatIsEncodedDecodes(t *testing.T) {
	m := map[string]string{}
	for i := 0; ; i++ {
		m[fmt.Sprintf("%x", i)] = ""
		if i%1000 == 0 {
			if _, err := EncodeBody(m); err != nil {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	for k := range m { // back under the bound
		delete(m, k)
		if len(m)%1000 == 0 {
			if b, err := EncodeBody(m); err == nil {
				var back map[string]string
				if err := DecodeBody(b, &back); err != nil || len(back) != len(m) {
					t.Fatalf("%d pairs encoded in %d bytes do not decode: %v", len(m), len(b), err)
				}
				return
			}
		}
	}
	t.Fatal("nothing under the bound")
}
