package ingest

import (
	"crypto/sha256"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestObjectHashIsEncodingJSONs: objectHash hashes exactly the bytes
// encoding/json.Marshal gives for the same object, plus the newline
// Unstructured.MarshalJSON's json.Encoder ends them with — a pod as the watch
// decodes it, strings with every character JSON escapes, numbers at the
// edges of its float formats, and seeded random trees — so journals
// written before and after it carry the same ObjectHash for the same
// object.
func TestObjectHashIsEncodingJSONs(t *testing.T) {
	check := func(name string, obj map[string]any) {
		t.Helper()
		want, err := json.Marshal(obj)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := objectHash(obj)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != sha256.Sum256(append(want, '\n')) {
			t.Fatalf("%s: objectHash differs from SHA-256 of encoding/json's bytes:\n%s", name, want)
		}
	}

	// A pod as the dynamic client hands it over: decoded from JSON into
	// an unstructured object (int64, float64, string, bool, maps, slices).
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: map[string]string{"app": "web", "controller-revision-hash": "web-5cc5f548c6"}, Annotations: map[string]string{"rollbook.dev/state": `{"rev":"a<b>&c","at":1}`}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1", Env: []corev1.EnvVar{{Name: "X", Value: "line1\nline2\t\"q\" \\ \u2028 é 日本"}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := runtime.DecodeInto(unstructured.UnstructuredJSONScheme, raw, u); err != nil {
		t.Fatal(err)
	}
	check("pod", u.Object)
	// And what Compact journals for it.
	o, err := Compact(Pods, u)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := u.MarshalJSON()
	if sum := sha256.Sum256(whole); string(o.ObjectHash) != string(sum[:]) {
		t.Fatal("Compact's ObjectHash is not the SHA-256 of the object's JSON")
	}

	var all strings.Builder
	for r := rune(0); r < 0x3000; r++ {
		all.WriteRune(r)
	}
	check("characters", map[string]any{"s": all.String(), "invalid": "a\xffb\xc3", "html": "<a href='x'>&amp;</a>", "k\"ey\n": "v"})
	check("numbers", map[string]any{"f": []any{0.0, math.Copysign(0, -1), 0.1, 1e-6, 1e-7, 9.99e-7, 1e20, 1e21, 1.5e300, -2.5e-10, 123456789.125, float64(1 << 53)},
		"i": []any{int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64)}, "b": []any{true, false, nil}})
	check("empty and nil", map[string]any{"m": map[string]any{}, "nm": map[string]any(nil), "s": []any{}, "ns": []any(nil), "int": 3, "str": []string{"x"}})

	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		check("random", map[string]any{"x": randomObject(rng, 4)})
	}
}

func randomObject(rng *rand.Rand, depth int) any {
	kind := rng.IntN(8)
	if depth == 0 {
		kind = rng.IntN(5)
	}
	switch kind {
	case 0:
		return nil
	case 1:
		return rng.IntN(2) == 0
	case 2:
		return rng.Int64() - rng.Int64()
	case 3:
		return math.Float64frombits(rng.Uint64()&^(0x7ff<<52) | uint64(rng.IntN(0x7fe))<<52) // finite
	case 4:
		return randomString(rng)
	case 5, 6:
		m := map[string]any{}
		for range rng.IntN(5) {
			m[randomString(rng)] = randomObject(rng, depth-1)
		}
		return m
	default:
		s := []any{}
		for range rng.IntN(5) {
			s = append(s, randomObject(rng, depth-1))
		}
		return s
	}
}

func randomString(rng *rand.Rand) string {
	b := make([]byte, rng.IntN(12))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return string(b)
}

// BenchmarkObjectHash: objectHash against what Compact did before (the
// object re-encoded by Unstructured.MarshalJSON, then hashed), on a
// running pod's object, in the same run.
//
//	go test -run '^$' -bench ObjectHash ./ingest/
func BenchmarkObjectHash(b *testing.B) {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", UID: "0b7c8a44-3a0e-4b8e-9a57-0d1c2e3f4a5b", ResourceVersion: "123456", Labels: map[string]string{"app": "web", "controller-revision-hash": "web-5cc5f548c6", "apps.kubernetes.io/pod-index": "0"}, OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "sts-uid"}}},
		Spec: corev1.PodSpec{NodeName: "node-1", ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "rollbook.dev/InPlaceUpdateReady"}},
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}},
				{Name: "log", Image: "registry.example/log:v1"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: "rollbook.dev/InPlaceUpdateReady", Status: corev1.ConditionTrue, Reason: "InPlaceUpdateReady"}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "registry.example/app:v1", ImageID: "registry.example/app@sha256:0123", ContainerID: "containerd://abc", Ready: true}, {Name: "log", Image: "registry.example/log:v1", ImageID: "registry.example/log@sha256:4567", ContainerID: "containerd://def", Ready: true}}},
	}
	raw, _ := json.Marshal(p)
	u := &unstructured.Unstructured{}
	if err := runtime.DecodeInto(unstructured.UnstructuredJSONScheme, raw, u); err != nil {
		b.Fatal(err)
	}
	b.Run("MarshalJSON+sha256", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			j, _ := u.MarshalJSON()
			_ = sha256.Sum256(j)
		}
	})
	b.Run("objectHash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = objectHash(u.Object)
		}
	})
}
