package projections

import (
	"crypto/sha256"
	"encoding/json"
	"maps"
)

// StateAnnotation is the pod annotation holding PodState as JSON.
const StateAnnotation = "rollbook.dev/state"

// PodState is the rollbook.dev/state annotation: written by the patch,
// read back through the watch. It records what the patch replaced, so that
// verification can tell a rebuilt container from the old one and a
// rollback can restore the exact images. It is parsed once, when the pod
// is folded (Pod.State), not on every plan: a plan reads it for every pod
// of the fleet.
type PodState struct {
	Rollout  string `json:"rollout"`
	Revision string `json:"rev"`
	// PatchedAt is the Unix nanosecond time of the tick the patch was
	// planned at: the start of the verify timeout.
	PatchedAt int64 `json:"at"`
	// Label is the pod's controller-revision-hash before the patch, for a
	// rollback.
	Label  string            `json:"label,omitempty"`
	Before []ContainerBefore `json:"before"`
	// Digest is stateDigest of the annotation the fold parsed this state
	// from (heldState), zero in a state made otherwise: the annotation's
	// JSON never holds it; a checkpoint does, so that a restored fold
	// holds what the straight fold does.
	Digest [16]byte `json:"-" cbor:"digest,omitzero"`
}

// ContainerBefore is a container as it was before the patch. Its
// ContainerID is held as the fold holds a container's (40 bytes, not a
// string of ~80 of its own), and reads and writes as the ID's text.
type ContainerBefore struct {
	Name        string      `json:"name"`
	Init        bool        `json:"init,omitempty"`
	Image       string      `json:"image"`
	ImageID     string      `json:"imageID,omitempty"`
	ContainerID ContainerID `json:"containerID,omitzero"`
	Restarts    int32       `json:"restarts"`
}

// ParseState reads a pod's state annotation: nil when there is none, or
// when it cannot be read (treated as never patched by Rollbook).
func ParseState(annotations map[string]string) *PodState {
	raw, ok := annotations[StateAnnotation]
	if !ok {
		return nil
	}
	var st PodState
	if json.Unmarshal([]byte(raw), &st) != nil {
		return nil
	}
	return &st
}

// A fleet Rollbook has rolled carries a state annotation on every pod it
// updated, until the next rollout's patch: ~350 bytes of JSON, decoded
// into a map of their own and a PodState of their own for every pod. The
// fold holds only the PodState (heldState): the annotation's text is
// dropped from the pod's annotations once read, known again by its digest,
// and the strings a rollout's pods have alike (the rollout, the revisions,
// the containers' names, images and image IDs) are one copy for the fleet.
// Held as decoded, a rolled pod cost 1.1 KB of heap more than one never
// rolled (BENCHMARKS §1, "A rolled fleet").

// stateDigest is what the fold knows a state annotation's text by once it
// has dropped it: the first 16 bytes of its SHA-256, so that a pod's next
// record, nearly always its status with the same annotation, reuses the
// state already parsed.
func stateDigest(raw string) [16]byte {
	sum := sha256.Sum256([]byte(raw))
	return [16]byte(sum[:16])
}

// heldState is the state annotation raw as the fold holds it: was (the
// state of the pod's last record) when raw is what was was parsed from,
// else raw parsed, its fleet-wide strings shared through ts; nil when raw
// cannot be read, as ParseState.
func heldState(raw string, was *PodState, ts *stateTexts) *PodState {
	d := stateDigest(raw)
	if was != nil && was.Digest == d {
		return was
	}
	var st PodState
	if json.Unmarshal([]byte(raw), &st) != nil {
		return nil
	}
	st.Digest = d
	ts.share(&st)
	return &st
}

// withoutState is annotations without the state annotation: nil when it
// was the only one (Rollbook keeps only its own annotations, so nearly
// always), else a copy, since the decoder may share a map between pods.
func withoutState(annotations map[string]string) map[string]string {
	if _, ok := annotations[StateAnnotation]; !ok {
		return annotations
	}
	if len(annotations) == 1 {
		return nil
	}
	out := maps.Clone(annotations)
	delete(out, StateAnnotation)
	return out
}

// stateTexts shares the strings of pods' states that a rollout's pods have
// alike; a container's ID is its own.
type stateTexts struct {
	slots [256]string
}

func (ts *stateTexts) text(s string) string {
	slot := &ts.slots[fnv32(s)&255]
	if *slot != s {
		*slot = s
	}
	return *slot
}

// share points st's strings at copies other pods' states hold (st's own
// are then garbage).
func (ts *stateTexts) share(st *PodState) {
	st.Rollout, st.Revision, st.Label = ts.text(st.Rollout), ts.text(st.Revision), ts.text(st.Label)
	for i := range st.Before {
		b := &st.Before[i]
		b.Name, b.Image, b.ImageID = ts.text(b.Name), ts.text(b.Image), ts.text(b.ImageID)
	}
}

// restoreState holds p's state as the fold does, p from a checkpoint: its
// strings shared, and the annotation's text, which a checkpoint of an
// older binary kept beside the state, dropped once read. A checkpoint
// of this binary holds the state's digest; one of an older binary, the
// text it was parsed from.
func (p *Pod) restoreState(ts *stateTexts) {
	if raw, ok := p.Annotations[StateAnnotation]; ok {
		p.State = heldState(raw, nil, ts)
		p.Annotations = withoutState(p.Annotations)
		return
	}
	if p.State != nil {
		ts.share(p.State)
	}
}
