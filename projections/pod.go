package projections

import (
	"fmt"
	"maps"

	"rollbook.dev/rollbook/journal"
)

// Pod is a pod as last observed: what planning reads of its last
// Observed. A fleet's fold keeps one per pod, so it holds only the fields
// a pod record has, not the 280-byte journal.Observed every kind shares
// (its spec, status, workload, node and revision facts and object hash
// are never a pod's, or never read). The fields carry journal.Observed's
// keys, so a checkpoint's pods encode as they did when Pod embedded it,
// and older checkpoints decode (TestPodEncodesAsObserved).
type Pod struct {
	Resource podResource `cbor:"1,keyasint"`
	// What a checkpoint of an older binary may hold of a pod, dropped
	// (the fold never kept the object hash; the others are never a
	// pod's). First, where they take no room.
	ObjectHash ignored `cbor:"12,keyasint,omitempty"`
	Workload   ignored `cbor:"21,keyasint,omitempty"`
	Node       ignored `cbor:"22,keyasint,omitempty"`
	Spec       ignored `cbor:"23,keyasint,omitempty"`
	Status     ignored `cbor:"24,keyasint,omitempty"`
	Deleted    ignored `cbor:"25,keyasint,omitempty"`
	Revision   ignored `cbor:"28,keyasint,omitempty"`
	// No plan reads a pod's generation, nor when its last record came
	// (the records hold both): dropped, 16 bytes a pod (a Pod was 128
	// bytes, not 144). Older checkpoints hold them.
	Generation ignored `cbor:"6,keyasint,omitempty"`
	ObservedAt ignored `cbor:",omitempty"`
	// The namespace, owner, foreign annotation keys, truncation, whether
	// it has annotations, its own annotations and its deletion, shared
	// (never nil in the fold: NewPod, podShapes.share).
	*PodShape
	Name string `cbor:"3,keyasint"`
	// The UID and resourceVersion, held as 16 bytes and a number when
	// they have the forms the apiserver writes (journal.UID): the decoded
	// strings held 64 bytes more for every pod.
	UID             journal.UID     `cbor:"4,keyasint"`
	ResourceVersion journal.Version `cbor:"5,keyasint"`
	// RawLabels are the labels as the fold keeps them, some Implied (see
	// labels.go): read them through Label, LookupLabel, LabelSet or Labels.
	RawLabels map[string]string `cbor:"7,keyasint,omitempty"`
	Created   int64             `cbor:"10,keyasint,omitempty"`
	Pod       *Facts            `cbor:"20,keyasint,omitempty"`
	// State is its rollbook.dev/state annotation, parsed. In the fold,
	// Annotations no longer holds the annotation's text (heldState).
	State *PodState
	// key is Key, made when the pod is folded: planning asks a pod its
	// key several times per plan.
	key string
}

// NewPod is the pod o, a pod's Observed, as the fold keeps it: its facts as the fold keeps them (factsOf), its maps and
// lists shared.
func NewPod(o *journal.Observed) *Pod {
	return &Pod{PodShape: &PodShape{Namespace: o.Namespace, Owner: o.Owner, AnnotationKeys: o.AnnotationKeys, Truncated: o.Truncated,
		HasAnnotations: o.HasAnnotations, Annotations: o.Annotations, Deleting: o.Deleting},
		Name: o.Name, UID: journal.MakeUID(o.UID), ResourceVersion: journal.MakeVersion(o.ResourceVersion),
		RawLabels: o.Labels, Created: o.Created, Pod: factsOf(o.Pod)}
}

// Observed is the pod as a pod record's body would hold it, its labels
// all given (none Implied), sharing the pod's maps and lists; its state
// annotation, which the fold holds parsed only, encoded again as the
// planner encodes one.
func (p *Pod) Observed() journal.Observed {
	annotations := p.Annotations
	if _, ok := annotations[StateAnnotation]; !ok && p.State != nil {
		annotations = maps.Clone(annotations)
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[StateAnnotation] = p.State.JSON()
	}
	return journal.Observed{Resource: "pods", Namespace: p.Namespace, Name: p.Name, UID: p.UID.String(),
		ResourceVersion: p.ResourceVersion.String(), Labels: p.Labels(),
		Annotations: annotations, Owner: p.Owner, Created: p.Created, Deleting: p.Deleting, Pod: p.Pod.PodFacts(),
		HasAnnotations: p.HasAnnotations, AnnotationKeys: p.AnnotationKeys, Truncated: p.Truncated}
}

// podResource is a Pod's resource, always "pods": encoded as
// journal.Observed.Resource was, held in no bytes.
type podResource struct{}

var encodedPods = []byte{0x64, 'p', 'o', 'd', 's'} // CBOR text "pods"

func (podResource) MarshalCBOR() ([]byte, error) { return encodedPods, nil }

func (*podResource) UnmarshalCBOR(b []byte) error {
	if string(b) != string(encodedPods) {
		return fmt.Errorf("projections: a pod's resource is %x, not pods", b)
	}
	return nil
}

// ignored is a field a checkpoint may hold and a Pod drops.
type ignored struct{}

func (*ignored) UnmarshalCBOR([]byte) error { return nil }

// Key is "namespace/name".
func (p *Pod) Key() string {
	if p.key != "" {
		return p.key
	}
	return p.Namespace + "/" + p.Name
}
