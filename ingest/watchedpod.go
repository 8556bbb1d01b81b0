package ingest

import (
	"bytes"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/util/json"

	"rollbook.dev/rollbook/journal"
)

// watchedPod is a pod a watch served, decoded once, straight into its
// typed form, with the hash of the object as served (rawObjectHash). The
// client's watches of pods deliver their pods as this, not as an
// unstructured map: the map was made only to be hashed and converted to
// the typed pod, twice the work of decoding the pod itself, and half of
// the controller's CPU at 1,000 pods (BENCHMARKS.md §3, "Pods decoded
// once").
type watchedPod struct {
	corev1.Pod
	sum [32]byte
}

func (w *watchedPod) DeepCopyObject() runtime.Object {
	c := &watchedPod{sum: w.sum}
	w.Pod.DeepCopyInto(&c.Pod)
	return c
}

// podPrefix is how the apiserver starts every pod it writes (its
// TypeMeta's fields first): anything else takes the unstructured way.
var podPrefix = []byte(`{"kind":"Pod","apiVersion":"v1",`)

// decodeWatchedPod decodes data, an object a watch served, when it is a
// pod both ways of reading it agree on; ok is false for anything else
// (another kind, JSON rawObjectHash leaves to the map, a field that does
// not decode into the pod's type), which then goes the unstructured way
// and fails, or is journaled, as before.
func decodeWatchedPod(data []byte) (*watchedPod, bool) {
	if !bytes.HasPrefix(data, podPrefix) {
		return nil, false
	}
	sum, ok := rawObjectHash(data)
	if !ok {
		return nil, false
	}
	w := &watchedPod{sum: sum}
	// As client-go decodes typed objects: case-sensitive, integers kept.
	if err := kjson.Unmarshal(data, &w.Pod); err != nil {
		return nil, false
	}
	return w, true
}

// compactWatched is Compact for a watched pod.
func compactWatched(w *watchedPod) journal.Observed {
	o := observedMeta(Pods.Name(), &w.Pod, w.sum)
	compactPod(&o, &w.Pod)
	return o
}
