package projections

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"rollbook.dev/rollbook/journal"
)

// A pod Rollbook updated carries its state annotation until the next
// rollout: the fold holds it parsed, not its text (Annotations keeps
// Rollbook's other annotations), reuses it while a pod's records carry the
// same text, parses a changed one, shares the strings a rollout's pods
// have alike, and gives the same back after a checkpoint, of this binary
// or of one that kept the text.
func TestRolledPodHoldsItsStateNotItsText(t *testing.T) {
	state := func(i int, at int64) (PodState, string) {
		st := NewPodState("ns/web-v2", "web-6f9d", "web-5d8f", at,
			[]ContainerBefore{{Name: "app", Image: "app:v1", ImageID: "registry/app@sha256:aa", ContainerID: ParseContainerID(fmt.Sprint("containerd://old-", i)), Restarts: 2}})
		raw, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return *st, string(raw)
	}
	f := newFolder(t)
	observe := func(name, rv string, annotations map[string]string) *Pod {
		t.Helper()
		f.apply(journal.KindObserved, "pods/ns/"+name, journal.Observed{Resource: "pods", Namespace: "ns", Name: name, UID: "u" + name, ResourceVersion: rv,
			Annotations: annotations, HasAnnotations: true, Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running"}})
		return f.s.Pods["ns/"+name]
	}
	want0, raw0 := state(0, 100)
	want1, raw1 := state(1, 100)
	web0 := observe("web-0", "10", map[string]string{StateAnnotation: raw0, "rollbook.dev/note": "kept"})
	web1 := observe("web-1", "11", map[string]string{StateAnnotation: raw1})
	for _, c := range []struct {
		pod  *Pod
		want PodState
		raw  string
		rest map[string]string
	}{{web0, want0, raw0, map[string]string{"rollbook.dev/note": "kept"}}, {web1, want1, raw1, nil}} {
		c.want.Digest = stateDigest(c.raw)
		if c.pod.State == nil || !reflect.DeepEqual(*c.pod.State, c.want) {
			t.Errorf("%s holds the state %+v, want %+v", c.pod.Name, c.pod.State, c.want)
		}
		if !maps.Equal(c.pod.Annotations, c.rest) || (c.rest == nil && c.pod.Annotations != nil) {
			t.Errorf("%s holds the annotations %v, want %v", c.pod.Name, c.pod.Annotations, c.rest)
		}
		if got := c.pod.Observed().Annotations[StateAnnotation]; got != c.raw {
			t.Errorf("%s's record would hold the state annotation %q, want %q", c.pod.Name, got, c.raw)
		}
	}
	s0, s1 := web0.State, web1.State
	if s0.fleet != s1.fleet {
		t.Error("two pods of one rollout hold their states' fleet-wide part twice")
	}

	// Its status changes, its annotation does not: the state is reused.
	if again := observe("web-0", "12", map[string]string{StateAnnotation: raw0, "rollbook.dev/note": "kept"}); again.State != s0 {
		t.Error("a record with the same annotation parsed it again")
	}
	// A new patch: a new state.
	want2, raw2 := state(0, 200)
	want2.Digest = stateDigest(raw2)
	if got := observe("web-0", "13", map[string]string{StateAnnotation: raw2}).State; got == s0 || !reflect.DeepEqual(*got, want2) {
		t.Errorf("a changed annotation holds %+v, want %+v", got, want2)
	}
	// One that cannot be read is no state, as ParseState says, and its
	// text is not kept either.
	if bad := observe("web-2", "14", map[string]string{StateAnnotation: "{not json"}); bad.State != nil || len(bad.Annotations) != 0 {
		t.Errorf("an unreadable annotation holds %+v, %v", bad.State, bad.Annotations)
	}

	// Through a checkpoint of this binary: the same states, reused by the
	// next record with the same annotation.
	back := throughCheckpoint(t, f.s)
	if got := back.State.Pods["ns/web-1"].State; !reflect.DeepEqual(got, web1.State) {
		t.Errorf("from a checkpoint web-1 holds %+v, want %+v", got, web1.State)
	}
	if a, b := back.State.Pods["ns/web-0"].State, back.State.Pods["ns/web-1"].State; a.fleet != b.fleet {
		t.Error("from a checkpoint two pods hold their states' fleet-wide part twice")
	}
	restored := back.State.Pods["ns/web-1"].State
	f.s = back.State
	if again := observe("web-1", "15", map[string]string{StateAnnotation: raw1}); again.State != restored {
		t.Error("after a checkpoint, a record with the same annotation parsed it again")
	}

	// A checkpoint of a binary that kept the annotation's text beside its
	// state, without a digest: the text is read and dropped.
	old := f.s.Pods["ns/web-1"]
	old.Annotations = map[string]string{StateAnnotation: raw1}
	old.State = NewPodState(want1.Rollout(), want1.Revision(), want1.Label(), want1.PatchedAt, slices.Collect(want1.Before()))
	back = throughCheckpoint(t, f.s)
	want1.Digest = stateDigest(raw1)
	if p := back.State.Pods["ns/web-1"]; len(p.Annotations) != 0 || p.State == nil || !reflect.DeepEqual(*p.State, want1) {
		t.Errorf("an older checkpoint's pod reads as %v, %+v; want no annotations and %+v", p.Annotations, p.State, want1)
	}
}

// withoutState never writes to the map it is given: the decoder may share
// one map between pods.
func TestWithoutStateCopies(t *testing.T) {
	in := map[string]string{StateAnnotation: "{}", "rollbook.dev/note": "x"}
	out := withoutState(in)
	if len(in) != 2 || !maps.Equal(out, map[string]string{"rollbook.dev/note": "x"}) {
		t.Errorf("withoutState(%v) = %v", in, out)
	}
	if got := withoutState(map[string]string{StateAnnotation: "{}"}); got != nil {
		t.Errorf("a map of the state annotation alone became %v, want nil", got)
	}
	other := map[string]string{"rollbook.dev/note": "x"}
	if got := withoutState(other); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(other).UnsafePointer() {
		t.Error("a map without the state annotation was copied")
	}
}

// A state annotation's JSON is what it was while a ContainerBefore held
// its container's ID as a string, byte for byte (patches made by older
// binaries are read, and recorded actions replayed, by their text), and
// reads back as the same ID.
func TestStateJSONHoldsContainerIDsAsText(t *testing.T) {
	type asString struct {
		Name        string `json:"name"`
		Init        bool   `json:"init,omitempty"`
		Image       string `json:"image"`
		ImageID     string `json:"imageID,omitempty"`
		ContainerID string `json:"containerID,omitempty"`
		Restarts    int32  `json:"restarts"`
	}
	hex := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, id := range []string{"containerd://" + hex, "kwok://" + hex, "cri-o://" + hex, "docker://ABC", "dry-run://u/app/1", "x://<&>", ""} {
		was, err := json.Marshal(asString{Name: "app", Image: "app:v1", ContainerID: id, Restarts: 3})
		if err != nil {
			t.Fatal(err)
		}
		is, err := json.Marshal(ContainerBefore{Name: "app", Image: "app:v1", ContainerID: ParseContainerID(id), Restarts: 3})
		if err != nil {
			t.Fatal(err)
		}
		if string(is) != string(was) {
			t.Errorf("ID %q encodes as %s, was %s", id, is, was)
		}
		var back ContainerBefore
		if err := json.Unmarshal(was, &back); err != nil || !back.ContainerID.Equal(ParseContainerID(id)) || !back.ContainerID.Is(id) {
			t.Errorf("ID %q reads back as %q (%v)", id, back.ContainerID, err)
		}
	}
}

// stateAsItWas is PodState as it was while it held every field of its
// annotation as its own: how older binaries wrote annotations and
// checkpoints.
type stateAsItWas struct {
	Rollout   string            `json:"rollout"`
	Revision  string            `json:"rev"`
	PatchedAt int64             `json:"at"`
	Label     string            `json:"label,omitempty"`
	Before    []ContainerBefore `json:"before"`
	Digest    [16]byte          `json:"-" cbor:"digest,omitzero"`
}

// A state holding its fleet-wide part apart encodes, in an annotation's
// JSON and in a checkpoint's CBOR, byte for byte as the state that held
// every field did (its digest eight bytes, where that one's was sixteen),
// and reads what that one wrote as the same state: a sixteen-byte digest
// as its first eight, which is the digest this binary makes.
func TestStateEncodesAsItWas(t *testing.T) {
	id := ParseContainerID("containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	for _, was := range []stateAsItWas{
		{Rollout: "ns/web-v2", Revision: "web-6f9d", PatchedAt: 1_800_000_000_123_456_789, Label: "web-5d8f",
			Before: []ContainerBefore{{Name: "app", Image: "app:v1", ImageID: "registry/app@sha256:aa", ContainerID: id, Restarts: 2}}},
		{Rollout: "ns/side", Revision: "r-2", PatchedAt: 7, Digest: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
			Before: []ContainerBefore{{Name: "init", Init: true, Image: "setup:v1"}, {Name: "proxy", Image: "proxy:v1", ImageID: "sha256:bb", ContainerID: ParseContainerID("cri-o://x"), Restarts: 9}}},
		{Rollout: "ns/none", Revision: "r-3"},
		{Rollout: "ns/" + strings.Repeat("long", 70), Revision: "r-4", PatchedAt: -5, Label: strings.Repeat("l", 24),
			Before: []ContainerBefore{{Name: "app", Image: strings.Repeat("registry/", 30) + "app:v1", ContainerID: ParseContainerID("docker://ABC"), Restarts: 70_000}}},
	} {
		is := NewPodState(was.Rollout, was.Revision, was.Label, was.PatchedAt, was.Before)
		is.Digest = [8]byte(was.Digest[:8])
		wantJSON, _ := json.Marshal(was)
		for _, v := range []any{is, *is} { // as a pointer and as a value
			if got, err := json.Marshal(v); err != nil || string(got) != string(wantJSON) {
				t.Errorf("%s encodes as %s (%v), was %s", was.Rollout, got, err, wantJSON)
			}
		}
		// What the library makes of the wire, stateAsItWas with this
		// binary's eight-byte digest: MarshalCBOR writes it by hand.
		wantCBOR := mustEncode(t, &stateWire{Rollout: was.Rollout, Revision: was.Revision, PatchedAt: was.PatchedAt, Label: was.Label, Before: was.Before, Digest: is.Digest})
		for _, v := range []any{is, *is} {
			if got := mustEncode(t, v); string(got) != string(wantCBOR) {
				t.Errorf("%s encodes in a checkpoint as %x, want %x", was.Rollout, got, wantCBOR)
			}
		}
		var fromOlder PodState
		if err := journal.DecodeBody(mustEncode(t, &was), &fromOlder); err != nil || !reflect.DeepEqual(fromOlder, *is) {
			t.Errorf("%s reads from an older checkpoint as %+v (%v), want %+v", was.Rollout, fromOlder, err, *is)
		}
		var fromJSON PodState
		if err := json.Unmarshal(wantJSON, &fromJSON); err != nil {
			t.Fatal(err)
		}
		var fromCBOR PodState
		if err := journal.DecodeBody(wantCBOR, &fromCBOR); err != nil {
			t.Fatal(err)
		}
		noDigest := *is
		noDigest.Digest = [8]byte{}
		if !reflect.DeepEqual(fromJSON, noDigest) || !reflect.DeepEqual(fromCBOR, *is) {
			t.Errorf("%s reads back as %+v and %+v, want %+v", was.Rollout, fromJSON, fromCBOR, *is)
		}
		if got := slices.Collect(is.Before()); !reflect.DeepEqual(got, was.Before) {
			t.Errorf("%s's containers read %+v, want %+v", was.Rollout, got, was.Before)
		}
		if is.Rollout() != was.Rollout || is.Revision() != was.Revision || is.Label() != was.Label || is.PatchedAt != was.PatchedAt {
			t.Errorf("%s reads as %q %q %q %d", was.Rollout, is.Rollout(), is.Revision(), is.Label(), is.PatchedAt)
		}
	}
}
