package projections

import (
	"fmt"
	"reflect"
	"testing"

	"rollbook.dev/rollbook/journal"
)

// The pods of a revision share their containers' shapes, their facts'
// shape and their own (namespace, owner), folded and from a checkpoint;
// each keeps its own container IDs; a pod whose container reads otherwise
// (restarted on a new image, restarted once more, not ready) has a shape
// of its own for it, and the fold gives back every field it was given.
func TestPodsShareTheirShapes(t *testing.T) {
	f := newFolder(t)
	requests := map[string]string{"cpu": "100m"}
	containers := func(i int) []journal.Container {
		app := journal.Container{Name: "app", Image: "app:v1", ImageID: "sha256:aa", ContainerID: fmt.Sprint("containerd://app-", i),
			RestartCount: int32(i / 3), Ready: true, Started: true, State: "running", StatusImage: "app:v1",
			Requests: requests, Limits: map[string]string{"cpu": "200m"}, ActualRequests: requests}
		if i == 4 {
			app.Image, app.StatusImage, app.ImageID = "app:v2", "app:v2", "sha256:bb"
		}
		return []journal.Container{app, {Name: "sidecar", Image: "proxy:v1", ContainerID: fmt.Sprint("containerd://proxy-", i), Ready: i != 1}}
	}
	inits := []journal.Container{{Name: "log", Image: "log:v1", ContainerID: "containerd://log", RestartAlways: true, State: "running"}}
	for i := range 5 {
		name := fmt.Sprint("web-", i)
		f.apply(journal.KindObserved, "pods/ns/"+name, journal.Observed{Resource: "pods", Namespace: "ns", Name: name, UID: "u" + name, ResourceVersion: fmt.Sprint(10 + i),
			Owner: &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "s-1"}, AnnotationKeys: []string{"a", "b"},
			Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running", Containers: containers(i), InitContainers: inits}})
	}
	f.apply(journal.KindObserved, "pods/ns/bare", journal.Observed{Resource: "pods", Namespace: "ns", Name: "bare", UID: "ubare", ResourceVersion: "20",
		Pod: &journal.PodFacts{NodeName: "n2"}})
	check := func(s *State, when string) {
		t.Helper()
		first := s.Pods["ns/web-0"].Pod
		for i := range 5 {
			pod := s.Pods[fmt.Sprint("ns/web-", i)]
			if pod.PodShape != s.Pods["ns/web-0"].PodShape || pod.Namespace != "ns" || pod.Owner.Name != "web" || len(pod.AnnotationKeys) != 2 {
				t.Errorf("%s: web-%d holds a shape of its own, or not its own namespace, owner or keys: %+v", when, i, pod.PodShape)
			}
			p := pod.Pod
			if got := p.PodFacts(); !reflect.DeepEqual(got.Containers, containers(i)) || !reflect.DeepEqual(got.InitContainers, inits) {
				t.Fatalf("%s: web-%d keeps %+v and %+v", when, i, got.Containers, got.InitContainers)
			}
			if shared := p.Containers[0].ContainerShape == first.Containers[0].ContainerShape; shared != (i < 3) {
				t.Errorf("%s: web-%d's app shares the first pod's shape: %v", when, i, shared)
			}
			if p.FactsShape != first.FactsShape || p.Phase != "Running" {
				t.Errorf("%s: web-%d's facts hold a shape of their own, or lost its phase: %+v", when, i, p.FactsShape)
			}
			if shared := p.Containers[1].ContainerShape == first.Containers[1].ContainerShape; shared != (i != 1) {
				t.Errorf("%s: web-%d's sidecar shares the first pod's shape: %v", when, i, shared)
			}
			if p.InitContainers()[0].ContainerShape != first.InitContainers()[0].ContainerShape {
				t.Errorf("%s: web-%d's init container holds a shape of its own", when, i)
			}
		}
	}
	check(f.s, "folded")
	back := throughCheckpoint(t, f.s)
	check(back.State, "from a checkpoint")
	if f := back.State.Pods["ns/bare"].Pod; f.FactsShape == nil || f.Phase != "" || f.NodeName != "n2" {
		t.Errorf("facts with none of the shape's fields read from a checkpoint as %+v", f)
	}
	if p := back.State.Pods["ns/bare"]; p.PodShape == nil || p.PodShape == back.State.Pods["ns/web-0"].PodShape || p.Owner != nil {
		t.Errorf("a pod without an owner reads from a checkpoint as %+v", p.PodShape)
	}

	// A record that changes a container's shape changes that pod's only.
	next := containers(1)
	next[0].State = "waiting:ContainerCreating"
	f.apply(journal.KindObserved, "pods/ns/web-1", journal.Observed{Resource: "pods", Namespace: "ns", Name: "web-1", UID: "uweb-1", ResourceVersion: "30",
		Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running", Containers: next, InitContainers: inits}})
	if got := f.s.Pods["ns/web-1"].Pod.Containers[0].State; got != "waiting:ContainerCreating" {
		t.Errorf("web-1's app is %q", got)
	}
	if got := f.s.Pods["ns/web-0"].Pod.Containers[0].State; got != "running" {
		t.Errorf("web-0's app became %q with web-1's", got)
	}

	// The shape holds a pod's own annotations and its deletion too: a pod
	// with only its state annotation, which the fold holds parsed, still
	// shares it; one being deleted, or with another of Rollbook's
	// annotations, holds its own, and the others keep theirs.
	again := func(i int, deleting int64, annotations map[string]string) {
		name := fmt.Sprint("web-", i)
		f.apply(journal.KindObserved, "pods/ns/"+name, journal.Observed{Resource: "pods", Namespace: "ns", Name: name, UID: "u" + name, ResourceVersion: fmt.Sprint(40 + i),
			Owner: &journal.OwnerRef{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "s-1"}, AnnotationKeys: []string{"a", "b"},
			Deleting: deleting, Annotations: annotations, Pod: &journal.PodFacts{NodeName: "n1", Phase: "Running", Containers: containers(i), InitContainers: inits}})
	}
	again(0, 0, map[string]string{StateAnnotation: `{"rollout":"ns/web","rev":"r-2","at":5,"before":[]}`})
	again(2, 1_800_000_000e9, nil)
	again(3, 0, map[string]string{"rollbook.dev/hold": "yes"})
	// A restore shares the pods' shapes in map order: restored many
	// times, so that an order in which a deleting pod's shape takes the
	// slot of its siblings' (a hash blind to the deletion) comes up.
	states := []*State{f.s}
	for range 20 {
		states = append(states, throughCheckpoint(t, f.s).State)
	}
	for _, s := range states {
		web := func(i int) *Pod { return s.Pods[fmt.Sprint("ns/web-", i)] }
		if web(0).PodShape != web(4).PodShape || web(0).State == nil || web(0).Annotations != nil {
			t.Errorf("a pod with only its state annotation holds %+v and state %+v, not web-4's shape", web(0).PodShape, web(0).State)
		}
		if web(2).PodShape == web(4).PodShape || web(2).Deleting != 1_800_000_000e9 || web(4).Deleting != 0 {
			t.Errorf("a pod being deleted reads %d, its sibling %d", web(2).Deleting, web(4).Deleting)
		}
		if web(3).PodShape == web(4).PodShape || web(3).Annotations["rollbook.dev/hold"] != "yes" || web(4).Annotations != nil {
			t.Errorf("a pod with an annotation of its own reads %v, its sibling %v", web(3).Annotations, web(4).Annotations)
		}
	}
}

// throughCheckpoint is s written as a checkpoint and loaded back.
func throughCheckpoint(t *testing.T, s *State) Books {
	t.Helper()
	b, err := journal.EncodeBody(&Books{State: s})
	if err != nil {
		t.Fatal(err)
	}
	var back Books
	if err := journal.DecodeCheckpoint(b, &back); err != nil {
		t.Fatal(err)
	}
	return back
}
