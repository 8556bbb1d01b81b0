package planner

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// RestartedAtAnnotation is what `kubectl rollout restart` sets on a
// workload's template. Its user asks for new containers, which no in-place
// change gives (the kubelet restarts a container only for a new image), so
// a change of it needs new pods.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// revisionDiff is what a workload's template changed between two
// revisions: the only changes an in-place update applies. Whatever
// admission or other controllers added to a pod (a service account and its
// token volume, injected sidecars, env, topology labels, defaults) is in
// neither template, so it is never part of the difference and never
// touched.
type revisionDiff struct {
	// notInPlace names the first field whose change needs a new pod
	// ("spec.containers[app].env"); "" when everything changes in place.
	notInPlace string
	// containers lists, per changed container, its new image and the
	// resources whose values changed (only those).
	containers []want
	// Metadata the template added or changed, and dropped.
	labels, annotations             map[string]string
	removeLabels, removeAnnotations []string
}

// diffTemplates compares the template of a pod's revision with the target's.
func diffTemplates(from, to *journal.TemplateFacts) revisionDiff {
	d := revisionDiff{labels: map[string]string{}, annotations: map[string]string{}}
	var why []string
	if f := firstDiffering(from.Fields, to.Fields); f != "" {
		why = append(why, "spec."+f)
	}
	for _, list := range []struct {
		path     string
		init     bool
		from, to []journal.TemplateContainer
	}{{"spec.initContainers", true, from.InitContainers, to.InitContainers}, {"spec.containers", false, from.Containers, to.Containers}} {
		w, bad := diffContainers(list.path, list.init, list.from, list.to)
		d.containers = append(d.containers, w...)
		why = append(why, bad...)
	}
	d.labels, d.removeLabels = diffMetadata(from.Labels, to.Labels)
	d.annotations, d.removeAnnotations = diffMetadata(from.Annotations, to.Annotations)
	if from.Annotations[RestartedAtAnnotation] != to.Annotations[RestartedAtAnnotation] {
		why = append(why, "metadata.annotations["+RestartedAtAnnotation+"] (kubectl rollout restart asks for new containers)")
	}
	if len(why) > 0 {
		d.notInPlace = why[0]
	}
	return d
}

// diffContainers compares one container list by name. Each changed
// container becomes a want holding only what changed.
func diffContainers(path string, init bool, from, to []journal.TemplateContainer) (out []want, why []string) {
	old := map[string]*journal.TemplateContainer{}
	for i := range from {
		old[from[i].Name] = &from[i]
	}
	seen := map[string]bool{}
	for i := range to {
		c := &to[i]
		seen[c.Name] = true
		o := old[c.Name]
		if o == nil {
			why = append(why, fmt.Sprintf("%s[%s] (added)", path, c.Name))
			continue
		}
		if f := firstDiffering(o.Fields, c.Fields); f != "" {
			why = append(why, fmt.Sprintf("%s[%s].%s", path, c.Name, f))
		}
		w := want{Name: c.Name, Init: init}
		if c.Image != o.Image {
			w.Image = c.Image
		}
		var gone []string
		w.Requests, gone = changedQuantities(o.Requests, c.Requests)
		for _, k := range gone {
			why = append(why, fmt.Sprintf("%s[%s].resources.requests.%s (removed)", path, c.Name, k))
		}
		w.Limits, gone = changedQuantities(o.Limits, c.Limits)
		for _, k := range gone {
			why = append(why, fmt.Sprintf("%s[%s].resources.limits.%s (removed)", path, c.Name, k))
		}
		if w.Image != "" || len(w.Requests) > 0 || len(w.Limits) > 0 {
			out = append(out, w)
		}
	}
	for _, c := range from {
		if !seen[c.Name] {
			why = append(why, fmt.Sprintf("%s[%s] (removed)", path, c.Name))
		}
	}
	return out, why
}

// firstDiffering returns the first key, sorted, whose hash differs or that
// only one side has.
func firstDiffering(a, b map[string][]byte) string {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var diff []string
	for k := range keys {
		if string(a[k]) != string(b[k]) {
			diff = append(diff, k)
		}
	}
	if len(diff) == 0 {
		return ""
	}
	sort.Strings(diff)
	return diff[0]
}

// changedQuantities returns the entries of to that from lacks or holds
// with another value, and the keys from has and to dropped.
func changedQuantities(from, to map[string]string) (changed map[string]string, removed []string) {
	for k, v := range to {
		if !sameQuantities(map[string]string{k: from[k]}, map[string]string{k: v}) {
			if changed == nil {
				changed = map[string]string{}
			}
			changed[k] = v
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			removed = append(removed, k)
		}
	}
	sort.Strings(removed)
	return changed, removed
}

// diffMetadata returns what to sets that from did not (or set otherwise),
// and the keys from had that to dropped, sorted.
func diffMetadata(from, to map[string]string) (set map[string]string, removed []string) {
	set = map[string]string{}
	for k, v := range to {
		if old, ok := from[k]; !ok || old != v {
			set[k] = v
		}
	}
	for k := range from {
		if _, ok := to[k]; !ok {
			removed = append(removed, k)
		}
	}
	sort.Strings(removed)
	return set, removed
}

// revisionKey is the projections key of the ControllerRevision a pod of
// the workload was created from, given its controller-revision-hash label:
// a StatefulSet's label is the revision's name, a DaemonSet's its hash.
func revisionKey(w *projections.Workload, label string) string {
	if w.Workload.Kind == "DaemonSet" {
		return w.Namespace + "/" + w.Name + "-" + label
	}
	return w.Namespace + "/" + label
}

// targetRevision finds the ControllerRevision of the workload's current
// template: a StatefulSet names it in status.updateRevision; a DaemonSet's
// is its newest (the DaemonSet controller renumbers a revision it returns
// to). It also returns the value pods of it carry in their
// controller-revision-hash label.
func targetRevision(s *projections.State, w *projections.Workload) (*projections.Revision, string) {
	if w.Workload.Kind == "StatefulSet" {
		r := s.Revisions[w.Namespace+"/"+w.Workload.UpdateRevision]
		if r == nil || r.Revision == nil || r.Revision.Template == nil {
			return nil, w.Workload.UpdateRevision
		}
		return r, w.Workload.UpdateRevision
	}
	// NB: the revision and the DaemonSet come on separate watches, so the
	// newest revision seen may be an older template's: only one holding
	// the DaemonSet's own template is current.
	if w.Workload.Template == nil {
		return nil, ""
	}
	current, _ := json.Marshal(w.Workload.Template) // json sorts map keys: equal facts, equal bytes
	var best *projections.Revision
	for _, r := range s.Revisions {
		if r.Namespace != w.Namespace || r.Owner == nil || r.Owner.UID != w.UID || r.Revision == nil || r.Revision.Template == nil {
			continue
		}
		if b, _ := json.Marshal(r.Revision.Template); string(b) != string(current) {
			continue
		}
		if best == nil || r.Revision.Revision > best.Revision.Revision ||
			(r.Revision.Revision == best.Revision.Revision && r.Name > best.Name) {
			best = r
		}
	}
	if best == nil {
		return nil, ""
	}
	return best, strings.TrimPrefix(best.Name, w.Name+"-")
}
