package projections

import (
	"crypto/sha256"
	"encoding/json"
	"iter"
	"maps"
	"slices"

	"rollbook.dev/rollbook/journal"
)

// StateAnnotation is the pod annotation holding PodState as JSON.
const StateAnnotation = "rollbook.dev/state"

// PodState is the rollbook.dev/state annotation: written by the patch,
// read back through the watch. It records what the patch replaced, so that
// verification can tell a rebuilt container from the old one and a
// rollback can restore the exact images. It is parsed once, when the pod
// is folded (Pod.State), not on every plan: a plan reads it for every pod
// of the fleet.
//
// A fleet Rollbook has rolled holds one on every pod it updated, until
// the next rollout's patch, and nearly all of it is alike across the
// rollout's pods: the rollout, the revisions, each changed container's
// name, image and image ID. That part is a stateFleet, one copy for the
// fleet in the fold (stateFleets); a pod's own are the patch's time and
// each changed container's ID and restarts. Held whole, a rolled pod's
// state was 208 bytes of heap; held so, 112 (BENCHMARKS.md §1, "A state's
// fleet-wide part held once"). Read it through its methods; NewPodState
// makes one. Its JSON and CBOR are what they were while it held the
// annotation's fields as its own (stateWire).
type PodState struct {
	fleet *stateFleet
	// PatchedAt is the Unix nanosecond time of the tick the patch was
	// planned at: the start of the verify timeout.
	PatchedAt int64
	// first and more are each changed container's own, in fleet.before's
	// order: the first held inline, since a rollout nearly always changes
	// one container, so a rolled pod's state is one allocation of 80
	// bytes, not a 64-byte state and a 48-byte run beside it; the others
	// (nil without) behind a pointer. Read them through run.
	first containerRun
	more  *[]containerRun
	// Digest is stateDigest of the annotation the fold parsed this state
	// from (heldState), zero in a state made otherwise: the annotation's
	// JSON never holds it; a checkpoint does, so that a restored fold
	// holds what the straight fold does. Eight bytes, not sixteen: with
	// them a state was 88 bytes and took a 96-byte block for every rolled
	// pod (BENCHMARKS.md §1, "A container's restarts in its shape").
	Digest [8]byte
}

// stateFleet is what the states of a rollout's pods hold alike.
type stateFleet struct {
	rollout, revision string
	// label is the pod's controller-revision-hash before the patch, for
	// a rollback.
	label  string
	before []containerWas
}

// containerWas is what a changed container's state holds alike across
// the fleet; containerRun, what is the pod's own.
type containerWas struct {
	name           string
	init           bool
	image, imageID string
}

// wasOf is b's part that the fleet holds alike.
func wasOf(b ContainerBefore) containerWas {
	return containerWas{name: b.Name, init: b.Init, image: b.Image, imageID: b.ImageID}
}

type containerRun struct {
	id       ContainerID
	restarts int32
}

// ContainerBefore is a container as it was before the patch: how a
// PodState is made (NewPodState) and read (PodState.Before). Its
// ContainerID reads and writes as the ID's text.
type ContainerBefore struct {
	Name        string      `json:"name"`
	Init        bool        `json:"init,omitempty"`
	Image       string      `json:"image"`
	ImageID     string      `json:"imageID,omitempty"`
	ContainerID ContainerID `json:"containerID,omitzero"`
	Restarts    int32       `json:"restarts"`
}

// NewPodState is the state of a pod patched for rollout to revision at
// patchedAt, whose controller-revision-hash was label and whose changed
// containers were before.
func NewPodState(rollout, revision, label string, patchedAt int64, before []ContainerBefore) *PodState {
	s := new(PodState)
	stateWire{Rollout: rollout, Revision: revision, PatchedAt: patchedAt, Label: label, Before: before}.into(s)
	return s
}

// Rollout is the key of the rollout whose patch wrote the state.
func (s *PodState) Rollout() string {
	if s.fleet == nil {
		return ""
	}
	return s.fleet.rollout
}

// Revision is the revision the patch updated the pod to.
func (s *PodState) Revision() string {
	if s.fleet == nil {
		return ""
	}
	return s.fleet.revision
}

// Label is the pod's controller-revision-hash before the patch.
func (s *PodState) Label() string {
	if s.fleet == nil {
		return ""
	}
	return s.fleet.label
}

// Before yields each container the patch changed, as it was before.
func (s *PodState) Before() iter.Seq[ContainerBefore] {
	return func(yield func(ContainerBefore) bool) {
		if s.fleet == nil {
			return
		}
		for i, c := range s.fleet.before {
			r := s.run(i)
			if !yield(ContainerBefore{Name: c.name, Init: c.init, Image: c.image, ImageID: c.imageID, ContainerID: r.id, Restarts: r.restarts}) {
				return
			}
		}
	}
}

// stateWire is a PodState as its annotation's JSON and a checkpoint's
// CBOR hold it: the fields PodState had when it held them all, with
// their tags (the CBOR encoder reads the json ones where there is no
// cbor tag), so both encode byte for byte as they did.
type stateWire struct {
	Rollout   string            `json:"rollout"`
	Revision  string            `json:"rev"`
	PatchedAt int64             `json:"at"`
	Label     string            `json:"label,omitempty"`
	Before    []ContainerBefore `json:"before"`
	// Digest: eight bytes; a checkpoint of an older binary holds
	// sixteen, of which the decoder keeps the first eight, the same
	// digest (stateDigest).
	Digest [8]byte `json:"-" cbor:"digest,omitzero"`
}

// into makes s the state w holds, its fleet-wide part its own.
func (w stateWire) into(s *PodState) {
	*s = PodState{PatchedAt: w.PatchedAt, Digest: w.Digest, fleet: w.fleet()}
	s.setRuns(w.Before)
}

// setRuns makes before's own parts s's runs.
func (s *PodState) setRuns(before []ContainerBefore) {
	if len(before) == 0 {
		return
	}
	s.first = runOf(before[0])
	if len(before) > 1 {
		more := make([]containerRun, len(before)-1)
		for i, b := range before[1:] {
			more[i] = runOf(b)
		}
		s.more = &more
	}
}

// runOf is b's own part.
func runOf(b ContainerBefore) containerRun {
	return containerRun{id: b.ContainerID, restarts: b.Restarts}
}

// run is the i-th changed container's own part.
func (s *PodState) run(i int) containerRun {
	if i == 0 {
		return s.first
	}
	return (*s.more)[i-1]
}

// fleet is the fleet-wide part of w.
func (w stateWire) fleet() *stateFleet {
	f := &stateFleet{rollout: w.Rollout, revision: w.Revision, label: w.Label}
	if len(w.Before) > 0 {
		f.before = make([]containerWas, len(w.Before))
		for i, b := range w.Before {
			f.before[i] = wasOf(b)
		}
	}
	return f
}

// wire is s as its encodings hold it (the JSON leaves out the digest).
func (s PodState) wire() stateWire {
	w := stateWire{Rollout: s.Rollout(), Revision: s.Revision(), PatchedAt: s.PatchedAt, Label: s.Label(), Digest: s.Digest}
	if s.fleet != nil && len(s.fleet.before) > 0 {
		w.Before = slices.Collect(s.Before())
	}
	return w
}

// MarshalJSON writes the annotation's JSON. NB: value receivers, so that
// a PodState encodes the same whether given as a value or a pointer.
func (s PodState) MarshalJSON() ([]byte, error) { return []byte(s.JSON()), nil }

func (s *PodState) UnmarshalJSON(b []byte) error {
	var w stateWire
	if err := parseStateJSON(string(b), &w); err != nil {
		return err
	}
	w.into(s)
	return nil
}

// UnmarshalCBOR reads a checkpoint's pod state (MarshalCBOR is in
// podstate_cbor.go).
func (s *PodState) UnmarshalCBOR(b []byte) error {
	var w stateWire
	if err := journal.DecodeBody(b, &w); err != nil {
		return err
	}
	w.into(s)
	return nil
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

// stateDigest is what the fold knows a state annotation's text by once it
// has dropped it: the first 8 bytes of its SHA-256, so that a pod's next
// record, nearly always its status with the same annotation, reuses the
// state already parsed. It only tells a pod's annotation from its last
// one: two texts sharing a digest (by chance, one pair in 2^64) would
// keep the older state. Whoever could craft such a pair may patch the
// pod's annotations, and so make it hold any state anyway.
func stateDigest(raw string) [8]byte {
	sum := sha256.Sum256([]byte(raw))
	return [8]byte(sum[:8])
}

// heldState is the state annotation raw as the fold holds it: was (the
// state of the pod's last record) when raw is what was was parsed from,
// else raw parsed, its fleet-wide part shared through fs; nil when raw
// cannot be read, as ParseState.
func heldState(raw string, was *PodState, fs *stateFleets) *PodState {
	d := stateDigest(raw)
	if was != nil && was.Digest == d {
		return was
	}
	var w stateWire
	if parseStateJSON(raw, &w) != nil {
		return nil
	}
	w.Digest = d
	return fs.held(w)
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

// stateFleets shares the fleet-wide parts of pods' states: a rollout's
// patched pods hold one.
type stateFleets struct {
	slots [256]*stateFleet
}

// held is the state w holds, its fleet-wide part shared (fleetOf).
func (fs *stateFleets) held(w stateWire) *PodState {
	s := &PodState{PatchedAt: w.PatchedAt, Digest: w.Digest, fleet: fs.fleetOf(w)}
	s.setRuns(w.Before)
	return s
}

// fleetOf is w's fleet-wide part: the one its slot shares when that reads
// the same, so a new one only for a rollout's first pod (or when two
// rollouts' pods alternate in a slot).
func (fs *stateFleets) fleetOf(w stateWire) *stateFleet {
	h := fnv32(w.Rollout) ^ fnv32(w.Revision)*16777619 ^ fnv32(w.Label)*31
	for _, b := range w.Before {
		h = h*131 ^ fnv32(b.Image)
	}
	slot := &fs.slots[h&255]
	if f := *slot; f == nil || !f.holds(w) {
		*slot = w.fleet()
	}
	return *slot
}

// share points st at the fleet-wide part its slot shares (a state from a
// checkpoint).
func (fs *stateFleets) share(st *PodState) {
	if st.fleet != nil {
		st.fleet = fs.fleetOf(st.wire())
	}
}

// holds: f is w's fleet-wide part.
func (f *stateFleet) holds(w stateWire) bool {
	if f.rollout != w.Rollout || f.revision != w.Revision || f.label != w.Label || len(f.before) != len(w.Before) {
		return false
	}
	for i, b := range w.Before {
		if f.before[i] != wasOf(b) {
			return false
		}
	}
	return true
}

// restoreState holds p's state as the fold does, p from a checkpoint: its
// fleet-wide part shared, and the annotation's text, which a checkpoint of
// an older binary kept beside the state, dropped once read. A checkpoint
// of this binary holds the state's digest; one of an older binary, the
// text it was parsed from.
func (p *Pod) restoreState(fs *stateFleets) {
	if raw, ok := p.shape().Annotations[StateAnnotation]; ok { // a checkpoint's pod may have no shape
		p.State = heldState(raw, nil, fs)
		p.Annotations = withoutState(p.Annotations)
		return
	}
	if p.State != nil {
		fs.share(p.State)
	}
}
