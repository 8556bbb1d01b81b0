package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// want is the desired state of one container.
type want struct {
	Name      string            `json:"n"`
	Init      bool              `json:"i,omitempty"`
	Image     string            `json:"im,omitempty"`
	Requests  map[string]string `json:"rq,omitempty"`
	Limits    map[string]string `json:"li,omitempty"`
	SpecHash  []byte            `json:"h,omitempty"` // template's rest-of-spec hash (workloadRef)
	SkipDrain bool              `json:"sd,omitempty"`
}

// target is what a rollout wants of its pods.
type target struct {
	containers []want
	// label is the controller-revision-hash the pods must carry
	// (workloadRef), "" for selector targets.
	label string
	// templateLabels are other template labels pods must carry.
	templateLabels map[string]string
	podSpecHash    []byte
	workload       *projections.Workload
	rev            string
}

// resolveTarget validates what the schema cannot (the workload exists and
// is on OnDelete, container names exist) and computes the target. A
// non-empty problem is a condition message saying what to fix; notFound
// marks a workload that may yet appear.
func resolveTarget(s *projections.State, r *projections.Rollout) (t target, problem string, notFound bool) {
	spec := r.Spec
	if r.SpecError != "" {
		return t, "the spec cannot be read: " + r.SpecError, false
	}
	switch {
	case spec.Target.WorkloadRef != nil && spec.Target.Selector != nil:
		return t, "spec.target sets both workloadRef and selector: keep exactly one", false
	case spec.Target.WorkloadRef == nil && spec.Target.Selector == nil:
		return t, "spec.target sets neither workloadRef nor selector: set exactly one", false
	}
	if ref := spec.Target.WorkloadRef; ref != nil {
		if ref.Kind != "StatefulSet" && ref.Kind != "DaemonSet" {
			return t, fmt.Sprintf("spec.target.workloadRef.kind %q is not supported: use StatefulSet or DaemonSet (or a selector)", ref.Kind), false
		}
		w := s.Workloads[ref.Kind+"/"+r.Namespace+"/"+ref.Name]
		if w == nil || w.Workload == nil {
			return t, fmt.Sprintf("%s %s/%s does not exist: create it or fix spec.target.workloadRef.name", ref.Kind, r.Namespace, ref.Name), true
		}
		if w.Workload.UpdateStrategy != "OnDelete" {
			return t, fmt.Sprintf("%s %s uses updateStrategy %s: set spec.updateStrategy.type to OnDelete so that only Rollbook replaces its pods", ref.Kind, ref.Name, w.Workload.UpdateStrategy), false
		}
		t.workload = w
		t.label = w.Workload.UpdateRevision
		t.podSpecHash = w.Workload.TemplateSpecHash
		t.templateLabels = map[string]string{}
		for k, v := range w.Workload.TemplateLabels {
			if k != RevisionLabel {
				t.templateLabels[k] = v
			}
		}
		if ref.Kind == "DaemonSet" {
			// NB: a DaemonSet's status has no update revision; it counts
			// a pod updated by its pod-template-generation label.
			t.label = ""
			if g := w.Workload.TemplateGeneration; g > 0 {
				t.templateLabels[TemplateGenerationLabel] = strconv.FormatInt(g, 10)
			}
		}
		for _, c := range w.Workload.TemplateInitContainers {
			t.containers = append(t.containers, want{Name: c.Name, Init: true, Image: c.Image, Requests: c.Requests, Limits: c.Limits, SpecHash: c.SpecHash})
		}
		for _, c := range w.Workload.TemplateContainers {
			t.containers = append(t.containers, want{Name: c.Name, Image: c.Image, Requests: c.Requests, Limits: c.Limits, SpecHash: c.SpecHash})
		}
	} else if len(spec.Containers) == 0 {
		return t, "spec.containers is empty: a selector target needs the desired image or resources of at least one container", false
	}
	for _, ct := range spec.Containers {
		i := -1
		for j := range t.containers {
			if t.containers[j].Name == ct.Name {
				i = j
			}
		}
		if t.workload != nil && i < 0 {
			return t, fmt.Sprintf("spec.containers names %q, which the %s template does not have (it has %s)", ct.Name, spec.Target.WorkloadRef.Kind, names(t.containers)), false
		}
		if i < 0 {
			t.containers = append(t.containers, want{Name: ct.Name})
			i = len(t.containers) - 1
		}
		w := &t.containers[i]
		if ct.Image != "" {
			w.Image = ct.Image
		}
		if ct.Resources != nil {
			w.Requests, w.Limits = merge(w.Requests, ct.Resources.Requests), merge(w.Limits, ct.Resources.Limits)
		}
		w.SkipDrain = ct.SkipDrain
	}
	t.rev = revision(t)
	return t, "", false
}

func names(ws []want) string {
	var n []string
	for _, w := range ws {
		n = append(n, w.Name)
	}
	return strings.Join(n, ", ")
}

func merge(a, b map[string]string) map[string]string {
	if len(b) == 0 {
		return a
	}
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// revision is a short hash of the target: the value of the pods' state
// annotation and of the rollout's status.targetRevision.
func revision(t target) string {
	b, _ := json.Marshal(struct {
		C []want            `json:"c"`
		L string            `json:"l,omitempty"`
		T map[string]string `json:"t,omitempty"`
	}{t.containers, t.label, t.templateLabels}) // json sorts map keys
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// selectPods returns the pods a rollout targets, sorted by key.
func selectPods(s *projections.State, r *projections.Rollout, t target) ([]*projections.Pod, string) {
	var out []*projections.Pod
	var match func(p *projections.Pod) bool
	if t.workload != nil {
		uid := t.workload.UID
		match = func(p *projections.Pod) bool { return p.Owner != nil && p.Owner.UID == uid }
	} else {
		sel, err := metav1.LabelSelectorAsSelector(r.Spec.Target.Selector)
		if err != nil {
			return nil, "spec.target.selector is invalid: " + err.Error()
		}
		if sel.Empty() {
			return nil, "spec.target.selector is empty and would select every pod in the namespace: add matchLabels or matchExpressions"
		}
		match = func(p *projections.Pod) bool { return sel.Matches(labels.Set(p.Labels)) }
	}
	for _, k := range podKeysIn(s, r.Namespace) {
		p := s.Pods[k]
		if p.Namespace == r.Namespace && p.Pod != nil && match(p) {
			out = append(out, p)
		}
	}
	return out, ""
}

// podKeysIn returns the sorted keys of a namespace's pods ("ns/name"
// sorts by namespace first, so they are one run of the sorted keys).
func podKeysIn(s *projections.State, ns string) []string {
	keys := make([]string, 0, len(s.Pods))
	prefix := ns + "/"
	for k := range s.Pods {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func sortedPodKeys(s *projections.State) []string {
	keys := make([]string, 0, len(s.Pods))
	for k := range s.Pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// findContainer returns the pod's container by name and its index.
func findContainer(p *journal.PodFacts, name string, init bool) (*journal.Container, int) {
	list := p.Containers
	if init {
		list = p.InitContainers
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i], i
		}
	}
	return nil, -1
}
