package ingest

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"rollbook.dev/rollbook/journal"
)

// revisionFacts reads a ControllerRevision. StatefulSets and DaemonSets
// both store a revision's data as {"spec":{"template":{...}}}: the pod
// template their pods of that revision were created from.
func revisionFacts(u *unstructured.Unstructured) (*journal.RevisionFacts, error) {
	rev, _, _ := unstructured.NestedInt64(u.Object, "revision")
	f := &journal.RevisionFacts{Revision: rev}
	data, ok := u.Object["data"]
	if !ok || data == nil {
		return f, nil // a revision of something else: no template to compare
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	var d struct {
		Spec struct {
			Template *corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("data is not a pod template patch: %w", err)
	}
	if d.Spec.Template != nil {
		f.Template = TemplateFacts(d.Spec.Template)
	}
	return f, nil
}

// TemplateFacts reduces a pod template to what two revisions are compared
// by: labels, annotations, images and resources whole, every other field
// hashed under its path. Hashing per field is what lets a refused in-place
// update name the field that forced it without journaling its value.
func TemplateFacts(t *corev1.PodTemplateSpec) *journal.TemplateFacts {
	// Env vars reading labels through fieldRef are checked on the pod
	// (PodFacts.EnvFieldRefs), whose running containers are what would go
	// stale, injected ones included.
	f := &journal.TemplateFacts{Labels: t.Labels, Annotations: t.Annotations}
	f.Fields = fieldHashes(&t.Spec, "containers", "initContainers")
	for i := range t.Spec.Containers {
		f.Containers = append(f.Containers, templateContainer(&t.Spec.Containers[i]))
	}
	for i := range t.Spec.InitContainers {
		f.InitContainers = append(f.InitContainers, templateContainer(&t.Spec.InitContainers[i]))
	}
	return f
}

func templateContainer(c *corev1.Container) journal.TemplateContainer {
	// What changes in place is kept whole, not hashed: the rest, including
	// resources.claims, which cannot change in place, is hashed by field.
	rest := c.DeepCopy()
	rest.Name, rest.Image = "", ""
	rest.Resources.Requests, rest.Resources.Limits = nil, nil
	return journal.TemplateContainer{
		Name:          c.Name,
		Image:         c.Image,
		Requests:      quantities(c.Resources.Requests),
		Limits:        quantities(c.Resources.Limits),
		RestartAlways: c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways,
		Fields:        fieldHashes(rest, "name"),
	}
}

// fieldHashes hashes each top-level JSON field of v, except those skipped.
// A typed struct marshals deterministically (map keys sorted), so equal
// fields hash equal across revisions.
func fieldHashes(v any, skip ...string) map[string][]byte {
	raw, _ := json.Marshal(v) // a typed API struct always marshals
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(raw, &fields)
	out := map[string][]byte{}
	for k, b := range fields {
		if slices.Contains(skip, k) || string(b) == "{}" {
			continue
		}
		sum := sha256.Sum256(b)
		out[k] = sum[:8]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// foreignAnnotationKeys lists the keys of annotations that are not
// Rollbook's, sorted; their values are never kept.
func foreignAnnotationKeys(in map[string]string) []string {
	var keys []string
	for k := range in {
		if !strings.HasPrefix(k, "rollbook.dev/") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
