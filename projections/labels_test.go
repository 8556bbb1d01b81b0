package projections

import (
	"maps"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"rollbook.dev/rollbook/journal"
)

// A StatefulSet pod's name and ordinal labels are implied by its name in
// the fold, its other labels shared with the pods that have the same; every
// label method still gives a pod its own labels, all of them, and a
// checkpoint's load shares them again.
func TestStatefulSetLabelsImplied(t *testing.T) {
	f := newFolder(t)
	stsLabels := func(name, index string) map[string]string {
		return map[string]string{"app": "web", "controller-revision-hash": "web-5d8f7c9b6d", PodNameLabel: name, PodIndexLabel: index}
	}
	pods := map[string]map[string]string{
		"web-0":   stsLabels("web-0", "0"),
		"web-12":  stsLabels("web-12", "12"),
		"web-007": stsLabels("web-007", "7"),                                                           // an ordinal no StatefulSet writes
		"other":   stsLabels("web-3", "3"),                                                             // not its own name
		"plain":   {"app": "web", "controller-revision-hash": "web-5d8f7c9b6d"},                        // no StatefulSet labels
		"web-4":   {"app": "web", "controller-revision-hash": "web-5d8f7c9b6d", PodNameLabel: "web-4"}, // no ordinal label
	}
	for name, l := range pods {
		f.apply(journal.KindObserved, "pods/ns/"+name, journal.Observed{Resource: "pods", Namespace: "ns", Name: name, UID: "u-" + name, ResourceVersion: "1", Labels: l, Pod: &journal.PodFacts{}})
	}
	check := func(s *State) {
		t.Helper()
		for name, want := range pods {
			p := s.Pods["ns/"+name]
			if got := p.Labels(); !maps.Equal(got, want) {
				t.Errorf("%s: Labels() = %v, want %v", name, got, want)
			}
			for k, v := range want {
				if got, ok := p.LookupLabel(k); !ok || got != v || p.Label(k) != v {
					t.Errorf("%s: label %s = %q, %v; want %q", name, k, got, ok, v)
				}
				if !labels.SelectorFromSet(labels.Set{k: v}).Matches(p.LabelSet()) {
					t.Errorf("%s: %s=%s does not select it", name, k, v)
				}
			}
			if _, ok := p.LookupLabel("tier"); ok || p.LabelSet().Has("tier") || !p.HasLabels() {
				t.Errorf("%s: has a label it has not, or none", name)
			}
		}
		a, b := s.Pods["ns/web-0"].RawLabels, s.Pods["ns/web-12"].RawLabels
		if reflect.ValueOf(a).UnsafePointer() != reflect.ValueOf(b).UnsafePointer() || a[PodNameLabel] != Implied {
			t.Errorf("two pods of one revision hold two maps: %v, %v", a, b)
		}
		for _, name := range []string{"web-007", "other", "plain", "web-4"} {
			if l := s.Pods["ns/"+name].RawLabels; !maps.Equal(l, pods[name]) {
				t.Errorf("%s: kept %v, want its labels as they are", name, l)
			}
		}
	}
	check(f.s)

	books := &Books{State: f.s, Open: map[string]OpenIntent{}, Rollouts: map[string]RolloutOrigin{}}
	data, err := journal.EncodeCheckpoint(books)
	if err != nil {
		t.Fatal(err)
	}
	restored := &Books{}
	if err := journal.DecodeCheckpoint(data, restored); err != nil {
		t.Fatal(err)
	}
	check(restored.State)

	// A copy that changes its labels (the planner's dry run) changes no
	// other pod's.
	cp := *f.s.Pods["ns/web-0"]
	l := maps.Clone(cp.Labels())
	l["app"] = "changed"
	cp.SetLabels(l)
	if cp.Label("app") != "changed" || cp.Label(PodNameLabel) != "web-0" || f.s.Pods["ns/web-12"].Label("app") != "web" {
		t.Errorf("the copy's labels %v, the other pod's %v", cp.Labels(), f.s.Pods["ns/web-12"].Labels())
	}

	// A pod's next record with the same labels keeps the shared map; one
	// whose labels changed gets another.
	shared := reflect.ValueOf(f.s.Pods["ns/web-12"].RawLabels).UnsafePointer()
	f.apply(journal.KindObserved, "pods/ns/web-0", journal.Observed{Resource: "pods", Namespace: "ns", Name: "web-0", UID: "u-web-0", ResourceVersion: "2", Labels: stsLabels("web-0", "0"), Pod: &journal.PodFacts{}})
	if reflect.ValueOf(f.s.Pods["ns/web-0"].RawLabels).UnsafePointer() != shared {
		t.Error("a record with the same labels left the shared map")
	}
	relabeled := stsLabels("web-12", "12")
	relabeled["controller-revision-hash"] = "web-6f7b485776" // its next revision
	f.apply(journal.KindObserved, "pods/ns/web-12", journal.Observed{Resource: "pods", Namespace: "ns", Name: "web-12", UID: "u-web-12", ResourceVersion: "2", Labels: relabeled, Pod: &journal.PodFacts{}})
	if p := f.s.Pods["ns/web-12"]; reflect.ValueOf(p.RawLabels).UnsafePointer() == shared || !maps.Equal(p.Labels(), relabeled) {
		t.Errorf("a relabeled pod: %v, want %v in a map of its set", p.Labels(), relabeled)
	}
}
