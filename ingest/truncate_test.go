package ingest

import (
	"errors"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"rollbook.dev/rollbook/journal"
)

// TestHugeObjectIsJournaledTruncated: a pod whose labels alone exceed the
// record bound is journaled by identity and state, saying what was left
// out, and what is journaled decodes.
func TestHugeObjectIsJournaledTruncated(t *testing.T) {
	labels := map[string]any{}
	for i := range 200_000 {
		labels[fmt.Sprintf("k%d", i)] = "v"
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "huge", "namespace": "ns", "uid": "u1", "resourceVersion": "7", "labels": labels},
		"spec":     map[string]any{"nodeName": "n1", "containers": []any{map[string]any{"name": "app", "image": "app:v1"}}},
		"status":   map[string]any{"phase": "Running"},
	}}
	o, err := Compact(Pods, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := journal.EncodeBody(&o); !errors.Is(err, journal.ErrTooLarge) {
		t.Fatalf("encoding %d labels: %v, want ErrTooLarge", len(o.Labels), err)
	}
	body, err := journal.EncodeBody(truncate(o, journal.ErrTooLarge))
	if err != nil {
		t.Fatal(err)
	}
	var back journal.Observed
	if err := journal.DecodeBody(body, &back); err != nil {
		t.Fatalf("a truncated record does not decode: %v", err)
	}
	if back.UID != "u1" || back.ResourceVersion != "7" || back.Pod == nil || back.Pod.NodeName != "n1" || len(back.Pod.Containers) != 1 {
		t.Fatalf("identity or state lost: %+v", back)
	}
	if back.Truncated == "" || len(back.Labels) != 0 {
		t.Fatalf("truncation not said (%q) or labels kept (%d)", back.Truncated, len(back.Labels))
	}
}

// TestNodeLabelsKept: a node's record keeps every label, so scatter may use
// any of them; a node too large to journal keeps its topology labels.
func TestNodeLabelsKept(t *testing.T) {
	labels := map[string]any{"topology.kubernetes.io/zone": "z1", "kubernetes.io/hostname": "n1", "example.com/rack": "r7"}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": "n1", "uid": "u1", "resourceVersion": "3", "labels": labels},
	}}
	o, err := Compact(Nodes, u)
	if err != nil {
		t.Fatal(err)
	}
	if o.Node == nil || o.Node.Labels["example.com/rack"] != "r7" || len(o.Node.Labels) != 3 {
		t.Fatalf("node labels journaled: %+v, want all three", o.Node)
	}
	for i := range 200_000 {
		labels[fmt.Sprintf("feature.example.com/f%d", i)] = "true"
	}
	if o, err = Compact(Nodes, u); err != nil {
		t.Fatal(err)
	}
	if _, err := journal.EncodeBody(&o); !errors.Is(err, journal.ErrTooLarge) {
		t.Fatalf("encoding %d node labels: %v, want ErrTooLarge", len(o.Node.Labels), err)
	}
	back := truncate(o, journal.ErrTooLarge)
	if len(back.Node.Labels) != 2 || back.Node.Labels["topology.kubernetes.io/zone"] != "z1" || back.Truncated == "" {
		t.Fatalf("truncated node keeps %v (%q), want its two topology labels", back.Node.Labels, back.Truncated)
	}
	if len(o.Node.Labels) != 200_003 {
		t.Fatal("truncate changed the record it was given")
	}
}
