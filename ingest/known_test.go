package ingest

import (
	"context"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"rollbook.dev/rollbook/journal"
)

// TestKnownOnlyWhatIsJournaled: an object observed in a round whose
// records never reached the journal (an error later in the batch, a List
// failing between pages) is journaled when it is seen again, not skipped
// as already known; once appended, seeing it again is a duplicate.
func TestKnownOnlyWhatIsJournaled(t *testing.T) {
	j, err := journal.Open(filepath.Join(t.TempDir(), "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	s := &stream{in: &Ingester{opts: Options{Journal: j}}, res: Pods, known: known{}}
	pod := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "5"},
	}}
	if _, ok, err := s.observe(pod, false); err != nil || !ok {
		t.Fatalf("first sight: ok %v err %v", ok, err)
	}
	// The round fails before its append; the next round starts afresh.
	clear(s.staged)
	e, ok, err := s.observe(pod, false)
	if err != nil || !ok {
		t.Fatalf("seen again after a failed round: ok %v err %v; it would be missing from the journal", ok, err)
	}
	if err := s.append(context.Background(), nil, []journal.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.observe(pod, false); ok {
		t.Fatal("an object already journaled at this version was journaled again")
	}
	if o, ok := s.known["pods/ns/a"]; !ok || o.rv != "5" {
		t.Fatalf("known set after the append: %+v %v", o, ok)
	}
}
