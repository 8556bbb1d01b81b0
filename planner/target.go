package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// want is the desired state of one container: for a selector target the
// rollout's containers; for a workloadRef target what the template
// changed between the pod's revision and the target, plus the rollout's
// overrides. Unset fields are not compared.
type want struct {
	Name      string            `json:"n"`
	Init      bool              `json:"i,omitempty"`
	Image     string            `json:"im,omitempty"`
	Requests  map[string]string `json:"rq,omitempty"`
	Limits    map[string]string `json:"li,omitempty"`
	SkipDrain bool              `json:"sd,omitempty"`
}

// target is what a rollout wants of its pods.
type target struct {
	// containers: a selector target's desired containers, or a workload
	// target's overrides (spec.containers).
	containers []want
	// label is the controller-revision-hash pods of the target revision
	// carry (workloadRef), "" for selector targets.
	label string
	// generation is a DaemonSet's template generation, which its pods
	// carry in pod-template-generation, "" otherwise.
	generation string
	workload   *projections.Workload
	// to is the target revision's template and toName its
	// ControllerRevision; nil while that revision is not yet observed.
	to     *journal.TemplateFacts
	toName string
	rev    string
	// bases caches, per revision label pods come from, what forPod
	// derives from it alone: the pods of one revision share it, so a
	// fleet's classification diffs one template pair, not one per pod.
	bases map[string]*podTarget
	// kept is bases from plan to plan (Incremental.keptBases); nil
	// outside the incremental planner.
	kept map[baseKey]*podTarget
	// images: a selector target's pods share their image changes here
	// (a workload target's pods, in their base).
	images *sharedImages
}

// baseKey is what a base is derived from besides the target's revision
// (rev: its containers, labels and revision name): the pods' revision,
// its ControllerRevision as folded and the target's template as folded.
// A ControllerRevision's data never changes, and the fold makes a new
// object for each record of one, so the same objects give the same base.
type baseKey struct {
	rev, from string
	cr        *projections.Revision
	to        *journal.TemplateFacts
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
		t.bases = map[string]*podTarget{}
		var cr *projections.Revision
		cr, t.label = targetRevision(s, w)
		if cr != nil {
			t.to, t.toName = cr.Revision.Template, cr.Name
		}
		if ref.Kind == "DaemonSet" {
			// NB: a DaemonSet's status has no update revision; it counts
			// a pod updated by its pod-template-generation label (or its
			// controller-revision-hash).
			if g := w.Workload.TemplateGeneration; g > 0 {
				t.generation = strconv.FormatInt(g, 10)
			}
		}
	} else if len(spec.Containers) == 0 {
		return t, "spec.containers is empty: a selector target needs the desired image or resources of at least one container", false
	} else {
		t.images = &sharedImages{}
	}
	for _, ct := range spec.Containers {
		if t.to != nil && !templateHas(t.to, ct.Name) {
			return t, fmt.Sprintf("spec.containers names %q, which the %s template does not have (it has %s)", ct.Name, spec.Target.WorkloadRef.Kind, templateNames(t.to)), false
		}
		w := want{Name: ct.Name, Image: ct.Image, SkipDrain: ct.SkipDrain}
		if t.to != nil {
			w.Init = !hasContainer(t.to.Containers, ct.Name)
		}
		if ct.Resources != nil {
			w.Requests, w.Limits = merge(nil, ct.Resources.Requests), merge(nil, ct.Resources.Limits)
		}
		t.containers = append(t.containers, w)
	}
	if problem := hookProblem(spec, t); problem != "" {
		return t, problem, false
	}
	t.rev = revision(t)
	return t, "", false
}

func templateHas(tf *journal.TemplateFacts, name string) bool {
	return hasContainer(tf.Containers, name) || hasContainer(tf.InitContainers, name)
}

func hasContainer(list []journal.TemplateContainer, name string) bool {
	for _, c := range list {
		if c.Name == name {
			return true
		}
	}
	return false
}

func templateNames(tf *journal.TemplateFacts) string {
	var n []string
	for _, c := range append(append([]journal.TemplateContainer(nil), tf.InitContainers...), tf.Containers...) {
		n = append(n, c.Name)
	}
	return strings.Join(n, ", ")
}

// forPod is what one pod of the rollout should become. For a workload
// target that is the template's change from the pod's own revision to the
// target revision, never the difference between pod and template: the
// pod's revision is its controller-revision-hash label, or, for a pod this
// rollout already patched toward this target, the label it had before (so
// a resize after the patch still knows what changed).
func (t *target) forPod(s *projections.State, pod *projections.Pod) podTarget {
	if t.workload == nil {
		return podTarget{rev: t.rev, label: t.label, containers: t.containers, images: t.images}
	}
	from := pod.Label(RevisionLabel)
	st := readState(pod)
	applied := false
	if st != nil && st.Revision() == t.rev {
		from, applied = st.Label(), true
	}
	pt := *t.base(s, from)
	pt.applied = applied
	return pt
}

// base is the part of forPod's answer that depends only on the revision
// label the pod comes from. Every map and slice in it is shared by the
// pods of that revision: nothing may change them (a patch's labels are
// patchLabels itself).
func (t *target) base(s *projections.State, from string) *podTarget {
	if b := t.bases[from]; b != nil {
		return b
	}
	var cr *projections.Revision
	if from != t.label {
		cr = s.Revisions[revisionKey(t.workload, from)]
	}
	key := baseKey{rev: t.rev, from: from, cr: cr, to: t.to}
	if b := t.kept[key]; b != nil {
		t.bases[from] = b
		return b
	}
	var d revisionDiff
	if from != t.label {
		if cr == nil || cr.Revision == nil || cr.Revision.Template == nil {
			d.notInPlace = fmt.Sprintf("the pod's revision %q has no ControllerRevision (deleted past revisionHistoryLimit?), so what changed cannot be told", from)
		} else {
			d = diffTemplates(cr.Revision.Template, t.to)
		}
	}
	b := &podTarget{rev: t.rev, label: t.label, canRecreate: true, notInPlace: d.notInPlace, images: &sharedImages{}}
	b.containers = withOverrides(d.containers, t.containers)
	b.templateLabels = map[string]string{}
	if t.generation != "" {
		b.templateLabels[TemplateGenerationLabel] = t.generation
	}
	for k, v := range d.labels {
		b.templateLabels[k] = v
	}
	b.labelKeys = sortedKeys(b.templateLabels)
	if _, clash := b.templateLabels[RevisionLabel]; !clash {
		// What a pod that has none of these labels (as every pod of the
		// revision) is patched with; with a clash diff builds it per pod.
		b.patchLabels = maps.Clone(b.templateLabels)
		if t.label != "" {
			b.patchLabels[RevisionLabel] = t.label
		}
	}
	b.removeLabels, b.annotations, b.removeAnnotations = d.removeLabels, d.annotations, d.removeAnnotations
	t.bases[from] = b
	if t.kept != nil {
		t.kept[key] = b
	}
	return b
}

// withOverrides lays the rollout's per-container overrides over what the
// template changed.
func withOverrides(changed, overrides []want) []want {
	out := make([]want, 0, len(changed)+len(overrides))
	for _, c := range changed {
		out = append(out, want{Name: c.Name, Init: c.Init, Image: c.Image, Requests: c.Requests, Limits: c.Limits})
	}
	for _, o := range overrides {
		i := -1
		for j := range out {
			if out[j].Name == o.Name && out[j].Init == o.Init {
				i = j
			}
		}
		if i < 0 {
			out = append(out, want{Name: o.Name, Init: o.Init})
			i = len(out) - 1
		}
		w := &out[i]
		if o.Image != "" {
			w.Image = o.Image
		}
		w.Requests, w.Limits = merge(w.Requests, o.Requests), merge(w.Limits, o.Limits)
		w.SkipDrain = o.SkipDrain
	}
	return out
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
// annotation and of the rollout's status.targetRevision. A workload
// target's template is identified by its ControllerRevision.
func revision(t target) string {
	b, _ := json.Marshal(struct {
		C []want `json:"c"`
		L string `json:"l,omitempty"`
		G string `json:"g,omitempty"`
		R string `json:"r,omitempty"`
	}{t.containers, t.label, t.generation, t.toName})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:10]
}

// selectPods returns the pods a rollout targets, sorted by key.
func selectPods(s *projections.State, r *projections.Rollout, t target) ([]*projections.Pod, string) {
	return selectPodsIn(s, podKeysIn(s, r.Namespace), r, t)
}

// selectPodsIn is selectPods over keys, the sorted keys of (at least) the
// rollout's namespace's pods: Plan sorts the keys once for every rollout.
func selectPodsIn(s *projections.State, keys []string, r *projections.Rollout, t target) ([]*projections.Pod, string) {
	match, problem := matcher(r, t)
	if problem != "" {
		return nil, problem
	}
	var out []*projections.Pod
	for _, k := range namespaceRun(keys, r.Namespace) {
		if p := s.Pods[k]; match(p) {
			out = append(out, p)
		}
	}
	return out, ""
}

// matcher tells the pods rollout r selects with target t (a pod of its
// namespace, observed, and its workload's or matching its selector), or
// why the rollout's selector cannot select any.
func matcher(r *projections.Rollout, t target) (func(*projections.Pod) bool, string) {
	ns := r.Namespace
	if t.workload != nil {
		uid := t.workload.UID
		return func(p *projections.Pod) bool {
			return p.Namespace == ns && p.Pod != nil && p.Owner != nil && p.Owner.UID == uid
		}, ""
	}
	sel, err := metav1.LabelSelectorAsSelector(r.Spec.Target.Selector)
	if err != nil {
		return nil, "spec.target.selector is invalid: " + err.Error()
	}
	if sel.Empty() {
		return nil, "spec.target.selector is empty and would select every pod in the namespace: add matchLabels or matchExpressions"
	}
	return func(p *projections.Pod) bool {
		return p.Namespace == ns && p.Pod != nil && sel.Matches(p.LabelSet())
	}, ""
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

// namespaceRun is the run of sorted keys ("ns/name") in namespace ns.
func namespaceRun(sorted []string, ns string) []string {
	prefix := ns + "/"
	i := sort.SearchStrings(sorted, prefix)
	j := i
	for j < len(sorted) && strings.HasPrefix(sorted[j], prefix) {
		j++
	}
	return sorted[i:j]
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
func findContainer(p *projections.Facts, name string, init bool) (*projections.Container, int) {
	list := p.Containers
	if init {
		list = p.InitContainers()
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i], i
		}
	}
	return nil, -1
}
