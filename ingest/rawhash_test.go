package ingest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
)

// hashOfDecoded is what ingest journaled for data before rawObjectHash:
// the object decoded as the dynamic client decodes it, then objectHash.
func hashOfDecoded(data []byte) ([32]byte, error) {
	u := &unstructured.Unstructured{}
	if err := runtime.DecodeInto(unstructured.UnstructuredJSONScheme, data, u); err != nil {
		return [32]byte{}, err
	}
	return objectHash(u.Object)
}

// TestRawObjectHashIsTheDecodedObjects: rawObjectHash of an object's JSON
// is objectHash of the map the unstructured decoding makes of it — for
// pods as served, for JSON written in other ways (spaced, keys in any
// order, escapes the apiserver does not write, numbers in every form),
// and for seeded random trees — and says "not ok" for whatever it would
// hash differently or the decoding refuses.
func TestRawObjectHashIsTheDecodedObjects(t *testing.T) {
	same := func(name string, data []byte) {
		t.Helper()
		want, err := hashOfDecoded(data)
		if err != nil {
			t.Fatalf("%s: the unstructured decoding: %v\n%s", name, err, data)
		}
		got, ok := rawObjectHash(data)
		if !ok {
			t.Fatalf("%s: rawObjectHash refused JSON the decoding takes:\n%s", name, data)
		}
		if got != want {
			t.Fatalf("%s: rawObjectHash differs from objectHash of the decoded object:\n%s", name, data)
		}
	}
	refused := func(name string, data []byte) {
		t.Helper()
		if _, ok := rawObjectHash(data); ok {
			t.Fatalf("%s: rawObjectHash took it; want it left to the decoding:\n%s", name, data)
		}
	}

	for i := range 3 {
		pod, err := json.Marshal(watchPod(i))
		if err != nil {
			t.Fatal(err)
		}
		same(fmt.Sprint("pod ", i), pod)
		spaced, _ := json.MarshalIndent(watchPod(i), " ", "\t")
		same("pod, indented", spaced)
	}
	same("keys in any order, spaces everywhere", []byte(" {\r\n\"z\" : 1 , \"kind\" : \"X\" ,\t\"a\":[ 1 , { \"y\" : null , \"b\" : true } , [ ] , { } ] , \"m\" : \"x\" } \n"))
	// (A top-level key with an escape or past ASCII is left to the
	// decoding: it might spell "items".)
	same("escapes", []byte(`{"kind":"Pod","o":{"s":"\u0041\/\"\\\b\f\n\r\t\u00e9\u2028\ud83d\ude00\ud800<>&","\u006b":"v","é":"日本","bad":"a`+"\xff"+`b","k\u0000":1,"j":"k"}}`))
	same("numbers", []byte(`{"kind":"X","a":[0,-0,1,-1,9223372036854775807,-9223372036854775808,9223372036854775808,-9223372036854775809,1.0,-0.0,1e3,1E+3,2.5e-7,1e21,1e20,0.000001,123456789.125,1.7976931348623157e308,5e-324,1e-400]}`))
	same("nesting", []byte(`{"kind":"X","n":`+strings.Repeat(`{"a":[`, 200)+"1"+strings.Repeat(`]}`, 200)+"}"))
	same("empty", []byte(`{"kind":"X","o":{},"a":[],"s":""}`))

	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		obj := map[string]any{"kind": "Thing", "apiVersion": "v1", "x": randomObject(rng, 5)}
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rawObjectHash(data); !ok && hasDuplicateKeys(t, data) {
			// encoding/json writes two keys that are not UTF-8 as the
			// same "\ufffd": left to the decoding, which keeps the last.
			continue
		}
		same("random", data)
	}

	refused("a duplicate key", []byte(`{"kind":"Pod","a":1,"a":2}`))
	refused("a duplicate key, escaped", []byte(`{"kind":"Pod","a":1,"\u0061":2}`))
	refused("a list", []byte(`{"kind":"PodList","items":[]}`))
	refused("a list, its key escaped", []byte(`{"kind":"PodList","\u0069tems":[]}`))
	refused("an array", []byte(`[1]`))
	refused("a float out of range", []byte(`{"a":1e400}`))
	for _, bad := range []string{``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":[1,]}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`,
		`{"a":tru}`, `{"a":nul}`, `{"a":"x}`, "{\"a\":\"\x01\"}", `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":1} x`, `{"a":1}{}`, `{'a':1}`, `{"a":+1}`} {
		refused(fmt.Sprintf("%q", bad), []byte(bad))
		if json.Valid([]byte(bad)) {
			t.Fatalf("%q is JSON, yet rawObjectHash refuses it", bad)
		}
	}
}

// hasDuplicateKeys: some object of data has a key twice.
func hasDuplicateKeys(t *testing.T, data []byte) bool {
	var m map[string]any
	strict, err := kjson.UnmarshalStrict(data, &m, kjson.DisallowDuplicateFields)
	if err != nil {
		t.Fatal(err)
	}
	return len(strict) > 0
}

// BenchmarkRawObjectHash: a served pod's hash from its bytes, against
// decoding it into a map and hashing that, in the same run.
//
//	go test -run '^$' -bench RawObjectHash ./ingest/
func BenchmarkRawObjectHash(b *testing.B) {
	data, _ := json.Marshal(watchPod(7))
	b.Run("decode+objectHash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hashOfDecoded(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rawObjectHash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := rawObjectHash(data); !ok {
				b.Fatal("refused")
			}
		}
	})
}

// FuzzRawObjectHash: whatever JSON rawObjectHash takes, the decoding
// into a map takes too, and the map's objectHash is the same. (Refusing
// is always allowed: the caller then decodes the map.)
//
//	go test -run '^$' -fuzz FuzzRawObjectHash -fuzztime 2m ./ingest/
func FuzzRawObjectHash(f *testing.F) {
	pod, _ := json.Marshal(watchPod(1))
	for _, seed := range []string{string(pod), `{"kind":"X","a":[1,-0,1.5e3,"\u00e9<&>",{"b":null,"a":true}]}`, `{"k\"":{"\\":"\ud800"}}`, `{"a":1,"a":2}`, `{"a":1e400}`, `{}`, ` {"a" : [ ] } `} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := rawObjectHash(data)
		if !ok {
			return
		}
		var m map[string]any
		if err := kjson.UnmarshalCaseSensitivePreserveInts(data, &m); err != nil {
			t.Fatalf("rawObjectHash took JSON the decoding refuses (%v): %q", err, data)
		}
		want, err := objectHash(m)
		if err != nil {
			t.Fatalf("rawObjectHash took what objectHash cannot hash (%v): %q", err, data)
		}
		if got != want {
			t.Fatalf("rawObjectHash differs from objectHash of the decoded map: %q", data)
		}
	})
}
