package ingest

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"rollbook.dev/rollbook/journal"
)

// CompactBothWays journals a pod's JSON as served both ways ingest reads
// pods: typed, as a watch delivers it (ok false when that way leaves it
// to the map), and through the unstructured map, as a list does. It
// returns both records' bodies.
func CompactBothWays(data []byte) (typed, viaMap []byte, ok bool, err error) {
	u := &unstructured.Unstructured{}
	if err := runtime.DecodeInto(unstructured.UnstructuredJSONScheme, data, u); err != nil {
		return nil, nil, false, err
	}
	o, err := Compact(Pods, u)
	if err != nil {
		return nil, nil, false, err
	}
	if viaMap, err = journal.EncodeBody(&o); err != nil {
		return nil, nil, false, err
	}
	w, ok := decodeWatchedPod(data)
	if !ok {
		return nil, viaMap, false, nil
	}
	t := compactWatched(w)
	typed, err = journal.EncodeBody(&t)
	return typed, viaMap, true, err
}

// IsWatchedPod says whether obj is a pod a watch delivered typed.
func IsWatchedPod(obj runtime.Object) bool {
	_, ok := obj.(*watchedPod)
	return ok
}
