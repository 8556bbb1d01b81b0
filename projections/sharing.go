package projections

import (
	"maps"
	"slices"

	"rollbook.dev/rollbook/journal"
)

// sharing holds what the fold shares between pods: a fleet's pods hold
// mostly the same things (the pods of a revision differ in their names,
// UIDs, versions, container IDs and times), and each table below makes
// one copy of each such thing serve every pod that holds it. Every table
// has a fixed number of slots indexed by a hash, a miss replacing the
// slot, so none grows with the fleet; a pod's last record is looked at
// first, since most records of a pod change none of them.
type sharing struct {
	labels     labelSets       // StatefulSet pods' labels (labels.go)
	texts      conditionTexts  // conditions' text (facts.go)
	containers containerShapes // containers' shapes (containers.go)
	facts      factsShapes     // facts' shapes (facts.go)
	pods       podShapes       // pods' shapes (below)
	states     stateFleets     // what pods' states hold alike (podstate.go)
}

// sharing returns s's tables, made on first use.
func (s *State) sharing() *sharing {
	if s.shared == nil {
		s.shared = &sharing{}
	}
	return s.shared
}

// pod makes what p holds alike with old (the pod as it was; nil) or other
// pods one copy shared with them.
func (sh *sharing) pod(p, old *Pod) {
	implyLabels(p, old, &sh.labels)
	var was *Facts
	if old != nil {
		was = old.Pod
	}
	sh.texts.share(p.Pod, was)
	sh.containers.share(p.Pod, was)
	sh.facts.share(p.Pod, was)
	sh.pods.share(p, old)
}

// PodShape is what a pod holds alike with the other pods of its
// workload: its namespace, its owner, the keys of the annotations the
// journal does not keep the values of, and what ingest truncated. Its
// fields read as the Pod's own; as with a ContainerShape, only the dry
// run writes to one, after Pod.Own.
//
// Its annotations (Rollbook's own but the state, which the fold holds
// parsed: nearly always none) and its deletion (nearly always none) are
// here too, though a pod that has either holds a shape of its own: held
// in the Pod, they made it 128 bytes, not 112, for every pod
// (BENCHMARKS.md §1, "A container's restarts in its shape").
type PodShape struct {
	Namespace      string            `cbor:"2,keyasint,omitempty"`
	Owner          *journal.OwnerRef `cbor:"9,keyasint,omitempty"`
	AnnotationKeys []string          `cbor:"27,keyasint,omitempty"`
	Truncated      string            `cbor:"29,keyasint,omitempty"`
	Annotations    map[string]string `cbor:"8,keyasint,omitempty"`
	Deleting       int64             `cbor:"11,keyasint,omitempty"`
	HasAnnotations bool              `cbor:"26,keyasint,omitempty"`
}

// same: a and b read the same.
func (a *PodShape) same(b *PodShape) bool {
	return a.Namespace == b.Namespace && a.Truncated == b.Truncated && a.HasAnnotations == b.HasAnnotations && slices.Equal(a.AnnotationKeys, b.AnnotationKeys) &&
		(a.Owner == b.Owner || (a.Owner != nil && b.Owner != nil && *a.Owner == *b.Owner)) &&
		a.Deleting == b.Deleting && maps.Equal(a.Annotations, b.Annotations)
}

var noPodShape PodShape

func (p *Pod) shape() *PodShape {
	if p.PodShape == nil {
		return &noPodShape
	}
	return p.PodShape
}

// Own gives p a shape and facts of its own, shared with no other pod, so
// that the dry run can write to them (its copy of p, not p).
func (p *Pod) Own() {
	s := *p.shape()
	p.PodShape = &s
	if p.Pod != nil {
		f := *p.Pod
		f.Conditions = slices.Clone(f.Conditions)
		f.own()
		p.Pod = &f
	}
}

// podShapes shares pods' shapes: a namespace's workloads have one or two
// each (their pods' foreign annotation keys may differ).
type podShapes struct {
	slots [256]*PodShape
}

// share makes p's shape one that old or another pod already holds, where
// they read the same, and gives p one if it has none (a checkpoint's pod
// without any of the shape's fields).
func (ps *podShapes) share(p, old *Pod) {
	s := p.shape()
	if old != nil && old.PodShape != nil && old.PodShape.same(s) {
		p.PodShape = old.PodShape
		return
	}
	h := fnv32(s.Namespace) ^ fnv32(s.Truncated)*16777619
	if s.HasAnnotations {
		h ^= 0x9e3779b9
	}
	if s.Owner != nil {
		h = h*31 ^ fnv32(s.Owner.UID)
	}
	for _, k := range s.AnnotationKeys {
		h = h*131 ^ fnv32(k)
	}
	// A deletion's time is whole seconds in nanoseconds, its low bits
	// zero: mixed, so that the slot tells it from the pods not deleted.
	h ^= uint32(len(s.Annotations)) ^ uint32(uint64(s.Deleting)*0x9e3779b97f4a7c15>>32)
	p.PodShape = shared(&ps.slots[h&255], s, (*PodShape).same)
}

// shared returns what slot holds if it reads as v, else a copy of v it
// then holds (a miss replaces the slot). A copy, not v: v may be part of
// a block the decoded record made for the pod, garbage once shared.
func shared[T any](slot **T, v *T, same func(a, b *T) bool) *T {
	if *slot == nil || !same(*slot, v) {
		own := *v
		*slot = &own
	}
	return *slot
}
