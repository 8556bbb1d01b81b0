package projections

import (
	"bytes"
	"reflect"
	"testing"

	"rollbook.dev/rollbook/journal"
)

// podAsItWas is Pod as it was when it embedded journal.Observed: how the
// checkpoints of older binaries hold pods.
type podAsItWas struct {
	journal.Observed
	ObservedAt int64
	State      *PodState
}

// TestPodEncodesAsObserved: a Pod encodes, as a checkpoint encodes it,
// as the Pod that embedded journal.Observed did, less the generation and
// the time of its last record, which no plan reads (an older binary reads
// them as 0); and a pod an older binary's checkpoint holds (those, and its
// object hash, kept) decodes to the Pod the fold would keep.
func TestPodEncodesAsObserved(t *testing.T) {
	o := journal.Observed{Resource: "pods", Namespace: "ns", Name: "web-3", UID: "u-3", ResourceVersion: "812", Generation: 1,
		Labels: map[string]string{"app": "web"}, Annotations: map[string]string{StateAnnotation: `{"rollout":"ns/r"}`},
		Owner: &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "s-1"}, Created: 5, Deleting: 9,
		Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running", Containers: []journal.Container{{Name: "app", Image: "app:v1"}},
			Conditions: []journal.Condition{{Type: "Ready", Status: "True", LastTransition: 4}, {Type: "rollbook.dev/InPlaceUpdateReady", Status: "False", Reason: "Updating", Message: "m", LastTransition: 6}}},
		HasAnnotations: true, AnnotationKeys: []string{"other"}, Truncated: "spec"}
	st := NewPodState("ns/r", "r-1", "", 0, nil)
	now := NewPod(&o)
	now.State = st
	was := podAsItWas{Observed: o, ObservedAt: 77, State: st}
	a, err := journal.EncodeBody(now)
	if err != nil {
		t.Fatal(err)
	}
	var older podAsItWas // as an older binary reads it
	if err := journal.DecodeBody(a, &older); err != nil {
		t.Fatal(err)
	}
	want := was
	want.Generation, want.ObservedAt = 0, 0
	if b, _ := journal.EncodeBody(&want); !bytes.Equal(b, mustEncode(t, &older)) {
		t.Fatalf("a Pod reads, as the Pod that embedded Observed, as\n%+v\nnot\n%+v", older, want)
	}
	var b []byte
	was.ObjectHash = []byte{1, 2, 3} // kept by binaries before slim
	if b, err = journal.EncodeBody(&was); err != nil {
		t.Fatal(err)
	}
	var back Pod
	if err := journal.DecodeBody(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, now) {
		t.Fatalf("an older checkpoint's pod reads as\n%+v\nwant\n%+v", back, *now)
	}
	// A pod is a pod: a checkpoint saying otherwise is refused.
	was.ObjectHash, was.Resource = nil, "nodes"
	b, _ = journal.EncodeBody(&was)
	if err := journal.DecodeBody(b, &back); err == nil {
		t.Fatal("a checkpoint's pod of resource nodes decoded")
	}
}

func mustEncode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := journal.EncodeBody(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
