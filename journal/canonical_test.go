package journal

import (
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"testing"
	"unsafe"
)

// canonSamples are bodies of the fast-path types, each field exercised
// somewhere, with edge values: empty but present maps and lists, big and
// negative integers, non-ASCII text.
func canonSamples() []any {
	full := sampleObserved()
	full.Generation = 7
	full.Deleting = -1
	full.ObjectHash = []byte{1, 2, 3}
	full.Spec = []byte(`{"a":1}`)
	full.Status = []byte{}
	full.Deleted = true
	full.HasAnnotations = true
	full.AnnotationKeys = []string{"a", "b"}
	full.Truncated = "labels"
	full.Pod.PodIP = "10.0.0.1"
	full.Pod.QOSClass = "Burstable"
	full.Pod.EnvFieldRefs = []string{"metadata.labels['x']"}
	full.Pod.Conditions = append(full.Pod.Conditions, Condition{Type: "rollbook.dev/InPlaceUpdateReady", Status: "False", Reason: "Updating", Message: "gated — ünïcode", LastTransition: math.MinInt64})
	full.Pod.InitContainers = []Container{{Name: "init", Image: "i", RestartAlways: true, RestartCount: math.MaxInt32,
		Limits: map[string]string{"cpu": "1"}, ActualRequests: map[string]string{}, ActualLimits: map[string]string{"memory": "1Gi"},
		StatusImage: "i2"}}
	empty := Observed{Resource: "pods", Name: "x", Labels: map[string]string{}, Pod: &PodFacts{Conditions: []Condition{}, Containers: []Container{}}}
	return []any{
		sampleObserved(), full, empty, Observed{},
		ActionFact{Key: "gate/shop/web-0", Kind: "gate", Pod: "shop/web-0", UID: "u", Action: []byte{0xa1, 1, 2}, PlanSeq: math.MaxUint64, Attempt: 3, PlanActions: 40},
		ActionFact{Key: "k", Kind: "status", Rollout: "shop/r", Revision: "r-1", ResultVersion: "812", Error: "boom", Class: ClassConflict, Attempt: -2, TraceParent: "00-ab-cd-01"},
		ActionFact{},
		// Not on the fast path: decMode reads them.
		Observed{Resource: "nodes", Name: "n", Node: &NodeFacts{Ready: true}},
		Observed{Resource: "statefulsets.apps", Namespace: "s", Name: "w", Workload: &WorkloadFacts{Kind: "StatefulSet"}},
	}
}

// olderBody is a body as an older binary encoded it, to be read as an
// Observed.
type olderBody []byte

// olderSpecHashes are pod bodies with the spec hashes older binaries
// wrote (PodFacts key 10, Container key 14), now Dropped: both decoders
// read them, and drop them.
func olderSpecHashes(t *testing.T) []any {
	var out []any
	for _, h := range [][]byte{{9, 8}, {}} {
		b, err := encMode.Marshal(map[uint64]any{1: "pods", 3: "web-0", 4: "u", 5: "7",
			20: map[uint64]any{1: "node-1", 10: h, 6: []any{map[uint64]any{1: "app", 2: "app:v1", 14: h, 5: 1}}}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, olderBody(b))
	}
	return out
}

// encodedSample is v encoded, and the type it is read as.
func encodedSample(t *testing.T, v any) ([]byte, reflect.Type) {
	if b, ok := v.(olderBody); ok {
		return b, reflect.TypeOf(Observed{})
	}
	b, err := EncodeBody(v)
	if err != nil {
		t.Fatal(err)
	}
	return b, reflect.TypeOf(v)
}

// TestOlderSpecHashesDecode: a pod body with the spec hashes older
// binaries wrote still decodes, on both paths, to the pod it was.
func TestOlderSpecHashesDecode(t *testing.T) {
	for _, v := range olderSpecHashes(t) {
		b := []byte(v.(olderBody))
		var fast, slow Observed
		if err := DecodeBody(b, &fast); err != nil {
			t.Fatal(err)
		}
		if err := decMode.Unmarshal(b, &slow); err != nil {
			t.Fatal(err)
		}
		for _, o := range []Observed{fast, slow} {
			if o.Name != "web-0" || o.Pod == nil || o.Pod.NodeName != "node-1" || len(o.Pod.Containers) != 1 ||
				o.Pod.Containers[0].Image != "app:v1" || o.Pod.Containers[0].RestartCount != 1 {
				t.Fatalf("%x reads as %+v", b, o)
			}
		}
	}
	// Anything but a byte string there is refused, as it was.
	b, _ := encMode.Marshal(map[uint64]any{1: "pods", 3: "web-0", 20: map[uint64]any{10: "text"}})
	var o Observed
	if err := DecodeBody(b, &o); err == nil {
		t.Fatalf("a text spec hash decoded: %+v", o)
	}
}

// TestCanonicalDecodersAgree: wherever the fast path accepts a body or a
// record envelope, decMode accepts it too and reads the same value. Checked
// on encoded samples and on thousands of mutations of them (bytes flipped,
// dropped, inserted), so a fast path that reads something decMode would
// refuse, or reads it differently, fails here.
func TestCanonicalDecodersAgree(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var in interner
	checkBody := func(b []byte, typ reflect.Type) (fast bool) {
		t.Helper()
		slow := reflect.New(typ)
		slowErr := decMode.Unmarshal(b, slow.Interface())
		for _, via := range []string{"DecodeBody", "interning"} {
			got := reflect.New(typ)
			ok := false
			switch via {
			case "DecodeBody":
				ok = fastBody(b, got.Interface())
			case "interning":
				r := canonReader{b: b, in: &in}
				switch v := got.Interface().(type) {
				case *Observed:
					ok = readObserved(&r, v)
				case *ActionFact:
					ok = readActionFact(&r, v)
				}
			}
			if !ok {
				continue
			}
			fast = true
			if slowErr != nil {
				t.Fatalf("%s: fast path accepted %x, decMode refuses it: %v", via, b, slowErr)
			}
			if !reflect.DeepEqual(got.Elem().Interface(), slow.Elem().Interface()) {
				t.Fatalf("%s: %x reads as\n fast %+v\n slow %+v", via, b, got.Elem().Interface(), slow.Elem().Interface())
			}
		}
		return fast
	}
	checkEnvelope := func(b []byte) bool {
		t.Helper()
		var slow envelope
		slowErr := decMode.Unmarshal(b, &slow)
		got, ok := decodeEnvelope(b, false)
		if aliased, aok := decodeEnvelope(b, true); aok != ok || ok && !reflect.DeepEqual(aliased, got) {
			t.Fatalf("envelope %x reads as\n %+v (%v) with its body aliased\n %+v (%v) copied", b, aliased, aok, got, ok)
		}
		if !ok {
			return false
		}
		if slowErr != nil {
			t.Fatalf("fast envelope accepted %x, decMode refuses it: %v", b, slowErr)
		}
		if !reflect.DeepEqual(got, slow) {
			t.Fatalf("envelope %x reads as\n fast %+v\n slow %+v", b, got, slow)
		}
		return true
	}
	mutate := func(b []byte) []byte {
		m := append([]byte(nil), b...)
		for range 1 + rng.Intn(3) {
			if len(m) == 0 {
				break
			}
			i := rng.Intn(len(m))
			switch rng.Intn(4) {
			case 0:
				m[i] ^= byte(1 << rng.Intn(8))
			case 1:
				m[i] = byte(rng.Intn(256))
			case 2:
				m = append(m[:i], m[i+1:]...)
			case 3:
				m = append(m[:i], append([]byte{byte(rng.Intn(256))}, m[i:]...)...)
			}
		}
		return m
	}
	fastSamples, fastMutants := 0, 0
	for _, v := range append(canonSamples(), olderSpecHashes(t)...) {
		b, typ := encodedSample(t, v)
		if checkBody(b, typ) {
			fastSamples++
		}
		for range 3000 {
			if checkBody(mutate(b), typ) {
				fastMutants++
			}
		}
		for _, kind := range []Kind{KindObserved, KindActionIntended} {
			r := Record{Seq: uint64(rng.Int63()), Kind: kind, Key: "pods/shop/wéb-0", Body: b}
			r.Time = r.Time.Add(-1)
			v, _, err := encodeRecord(&r)
			if err != nil {
				t.Fatal(err)
			}
			env, err := unframe(v)
			if err != nil {
				t.Fatal(err)
			}
			if !checkEnvelope(env) {
				t.Fatalf("the fast path refused an envelope the encoder wrote: %x", env)
			}
			for range 500 {
				checkEnvelope(mutate(env))
			}
		}
	}
	// Records with no body encode it as null; the decoders agree on nil.
	r := Record{Seq: 1, Kind: KindTick, Key: "tick"}
	v, _, _ := encodeRecord(&r)
	env, _ := unframe(v)
	if !checkEnvelope(env) {
		t.Fatal("the fast path refused a record with no body")
	}
	if want := len(canonSamples()) - 2 + len(olderSpecHashes(t)); fastSamples != want {
		t.Fatalf("the fast path read %d of the %d samples it should", fastSamples, want)
	}
	if fastMutants == 0 {
		t.Fatal("no mutant took the fast path: the mutation check tests nothing")
	}
	t.Logf("fast path: %d samples, %d mutants", fastSamples, fastMutants)
}

// TestDecodeBodyInterns: the strings and small maps DecodeBody returns
// for equal text share their memory, and the values are equal to decMode's.
func TestDecodeBodyInterns(t *testing.T) {
	b, err := EncodeBody(sampleObserved())
	if err != nil {
		t.Fatal(err)
	}
	var o1, o2, want Observed
	if err := DecodeBody(b, &o1); err != nil {
		t.Fatal(err)
	}
	if err := DecodeBody(b, &o2); err != nil {
		t.Fatal(err)
	}
	if err := decMode.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o1, want) || !reflect.DeepEqual(o2, want) {
		t.Fatalf("DecodeBody reads %+v, decMode %+v", o1, want)
	}
	if p1, p2 := unsafeData(o1.Pod.Containers[0].Image), unsafeData(o2.Pod.Containers[0].Image); p1 != p2 {
		t.Fatal("an image read twice is two strings")
	}
	if reflect.ValueOf(o1.Pod.Containers[0].Requests).UnsafePointer() != reflect.ValueOf(o2.Pod.Containers[0].Requests).UnsafePointer() {
		t.Fatal("requests read twice are two maps")
	}
	if o1.Owner == nil || o1.Owner != o2.Owner {
		t.Fatal("an owner read twice is two OwnerRefs")
	}
	if len(o1.Pod.ReadinessGates) == 0 || &o1.Pod.ReadinessGates[0] != &o2.Pod.ReadinessGates[0] {
		t.Fatal("readiness gates read twice are two lists")
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }

// TestSlotHashSpreads: the interner's hash spreads the strings a fleet's
// records hold (names that differ only in their last bytes, numbers,
// addresses, image digests) over its slots about as evenly as chance would. A hash whose
// last bytes barely reach the slot's bits fails it: one tried for this
// put 156 of 100,000 names in one of 4,096 slots, and none in others.
func TestSlotHashSpreads(t *testing.T) {
	const n, slots = 100000, 4096
	for _, form := range []string{"bench/web-%d", "web-%02d-%d", "%d", "10.0.%d.%d", "registry.example/app@sha256:%064d"} {
		count := make([]int, slots)
		for i := range n {
			var s string
			switch form {
			case "web-%02d-%d", "10.0.%d.%d":
				s = fmt.Sprintf(form, i/1000, i%1000)
			default:
				s = fmt.Sprintf(form, i)
			}
			count[slotHash([]byte(s))&(slots-1)]++
		}
		most, least := 0, n
		for _, c := range count {
			most, least = max(most, c), min(least, c)
		}
		// A mean of 24.4 a slot: chance puts ~45 in the fullest and
		// ~8 in the emptiest.
		if most > 60 || least < 3 {
			t.Errorf("%q: %d to %d strings a slot, for %.1f on average", form, least, most, float64(n)/slots)
		}
	}
}
