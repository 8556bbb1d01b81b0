package actuator

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"rollbook.dev/rollbook/planner"
)

// uidMeta is the metadata of every patch: the UID the plan saw. The
// apiserver refuses a patch whose result changes metadata.uid (422 on
// metadata.uid), so a patch carrying it applies only to that very object,
// never to a replacement created under the same name.
type uidMeta struct {
	UID types.UID `json:"uid"`
}

// gateBody is the strategic-merge patch of pods/status that sets only the
// readiness-gate condition. Conditions merge on "type", so every other
// condition, Ready included (the kubelet's), is left as it is.
//
// For lifecycle hooks the same write sets the action's labels (the
// rollbook.dev/hook marker), removes its RemoveLabels (null: a key that is
// absent is no error in a strategic merge patch) and sets each of its
// ClearConditions False: pods/status accepts label changes (the status
// strategy resets only spec, ownerReferences and deletionTimestamp), so
// the marker costs no write of its own.
func gateBody(act planner.Action, ready bool, now time.Time) ([]byte, error) {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	type condition struct {
		Type               string                 `json:"type"`
		Status             corev1.ConditionStatus `json:"status"`
		Reason             string                 `json:"reason,omitempty"`
		Message            string                 `json:"message,omitempty"`
		LastTransitionTime metav1.Time            `json:"lastTransitionTime"`
	}
	type meta struct {
		UID    types.UID          `json:"uid"`
		Labels map[string]*string `json:"labels,omitempty"`
	}
	body := struct {
		Metadata meta `json:"metadata"`
		Status   struct {
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}{Metadata: meta{UID: types.UID(act.UID)}}
	labels, err := gateLabels(act)
	if err != nil {
		return nil, err
	}
	body.Metadata.Labels = labels
	body.Status.Conditions = []condition{{
		Type:    planner.GateCondition,
		Status:  status,
		Reason:  act.Reason,
		Message: act.Message,
		// NB: without a read the actuator cannot know whether the status
		// really transitions; a repeated gate moves the time again, which
		// is harmless (nothing orders by it) and keeps the write blind.
		LastTransitionTime: metav1.NewTime(now),
	}}
	for _, typ := range act.ClearConditions {
		if typ == "" || typ == planner.GateCondition || slices.ContainsFunc(body.Status.Conditions, func(c condition) bool { return c.Type == typ }) {
			return nil, invalidActionf("%s of %s clears condition %q", act.Kind, act.Pod, typ)
		}
		body.Status.Conditions = append(body.Status.Conditions, condition{
			Type: typ, Status: corev1.ConditionFalse, Reason: planner.ReasonHookWaiting,
			Message: "cleared by Rollbook: a lifecycle hook wait began", LastTransitionTime: metav1.NewTime(now),
		})
	}
	return json.Marshal(body)
}

// gateLabels is the labels map of a gate or ungate patch: a value sets a
// label, null removes it.
func gateLabels(act planner.Action) (map[string]*string, error) {
	if len(act.Labels)+len(act.RemoveLabels) == 0 {
		return nil, nil
	}
	out := map[string]*string{}
	for k, v := range act.Labels {
		if k == "" {
			return nil, invalidActionf("%s of %s sets an empty label key", act.Kind, act.Pod)
		}
		out[k] = &v
	}
	for _, k := range act.RemoveLabels {
		if _, dup := out[k]; dup || k == "" {
			return nil, invalidActionf("%s of %s removes label %q it also sets, twice, or empty", act.Kind, act.Pod, k)
		}
		out[k] = nil
	}
	return out, nil
}

func (a *Actuator) gate(ctx context.Context, act planner.Action, ready bool) (string, error) {
	ns, name, err := podRef(act)
	if err != nil {
		return "", err
	}
	body, err := gateBody(act, ready, a.opts.Clock())
	if err != nil {
		return "", invalidActionf("%v", err)
	}
	pod, err := a.kube.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, body, a.patchOptions(), "status")
	if err != nil {
		return "", err
	}
	return pod.ResourceVersion, nil
}

// jsonOp is one RFC 6902 operation.
type jsonOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// MarshalJSON writes "value" for every operation but remove, which has
// none. NB: omitempty cannot do it: `test` of null (a map that must still
// be absent) needs an explicit "value":null.
func (o jsonOp) MarshalJSON() ([]byte, error) {
	if o.Op == "remove" {
		return json.Marshal(struct {
			Op   string `json:"op"`
			Path string `json:"path"`
		}{o.Op, o.Path})
	}
	type plain jsonOp // no MarshalJSON: no recursion
	return json.Marshal(plain(o))
}

// escapePointer escapes a JSON-pointer reference token (RFC 6901): '~'
// first, then '/', so "rollbook.dev/state" becomes "rollbook.dev~1state".
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// patchBody is the one JSON patch of a Patch action. Its `test` operations
// are the preconditions: the UID, and for each container its name at the
// planned index and the image the plan is replacing; if any fails, nothing
// is applied (RFC 6902 patches are atomic) and the apiserver answers 422.
//
// When the plan says a map must be created (CreateLabels,
// CreateAnnotations), a `test` that it is still absent (null) comes first:
// otherwise `add` of an empty map would wipe labels someone added since.
//
// Removals (RemoveLabels, RemoveAnnotations) are bare `remove` operations:
// the plan knows a dropped key is on the pod, not which value it has now,
// so there is nothing to `test`. A `remove` of a key that is no longer
// there fails the whole patch with the same bare 422 as a failed `test`,
// which classifies as conflict: the plan was stale, and the next one,
// planned from the pod as the watch shows it, no longer lists that key.
// Every label and annotation the action does not name is left as it is:
// `add` and `remove` address single keys, never the whole map.
func patchBody(act planner.Action) ([]byte, error) {
	if len(act.Images) == 0 && len(act.Labels) == 0 && len(act.RemoveLabels) == 0 &&
		act.State == "" && len(act.Annotations) == 0 && len(act.RemoveAnnotations) == 0 {
		return nil, invalidActionf("patch of %s changes nothing", act.Pod)
	}
	ops := []jsonOp{{Op: "test", Path: "/metadata/uid", Value: act.UID}}
	for _, c := range act.Images {
		if c.Name == "" || c.Index < 0 || c.From == "" || c.To == "" {
			return nil, invalidActionf("patch of %s: incomplete image change %+v", act.Pod, c)
		}
		list := "containers"
		if c.Init {
			list = "initContainers"
		}
		base := fmt.Sprintf("/spec/%s/%d", list, c.Index)
		ops = append(ops,
			jsonOp{Op: "test", Path: base + "/name", Value: c.Name},
			jsonOp{Op: "test", Path: base + "/image", Value: c.From},
			jsonOp{Op: "replace", Path: base + "/image", Value: c.To},
		)
	}

	labels, err := mapOps(act, "labels", act.CreateLabels, act.Labels, act.RemoveLabels)
	if err != nil {
		return nil, err
	}
	ops = append(ops, labels...)

	annotations := act.Annotations
	if act.State != "" {
		if _, ok := act.Annotations[planner.StateAnnotation]; ok {
			return nil, invalidActionf("patch of %s sets %s both as State and as a template annotation", act.Pod, planner.StateAnnotation)
		}
		annotations = maps.Clone(act.Annotations)
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[planner.StateAnnotation] = act.State
	}
	anns, err := mapOps(act, "annotations", act.CreateAnnotations, annotations, act.RemoveAnnotations)
	if err != nil {
		return nil, err
	}
	ops = append(ops, anns...)
	return json.Marshal(ops)
}

// mapOps are the operations on one metadata map (labels or annotations):
// create it when the plan says it is absent and something is added to it,
// then add the keys of set and remove those of remove, each in sorted
// order so equal actions give equal bytes.
func mapOps(act planner.Action, field string, create bool, set map[string]string, remove []string) ([]jsonOp, error) {
	base := "/metadata/" + field
	removed := slices.Sorted(slices.Values(remove))
	for i, k := range removed {
		// NB: a key removed twice, or removed and set, would fail the
		// patch every time as a conflict; the replan would ask for it
		// again, for ever. Refused here, it is reported.
		if k == "" || (i > 0 && removed[i-1] == k) {
			return nil, invalidActionf("patch of %s removes %s key %q twice or empty", act.Pod, field, k)
		}
		if _, ok := set[k]; ok {
			return nil, invalidActionf("patch of %s both sets and removes %s key %q", act.Pod, field, k)
		}
	}
	if create && len(removed) > 0 {
		return nil, invalidActionf("patch of %s removes %s %q from a map it says is absent", act.Pod, field, removed)
	}
	var ops []jsonOp
	if create && len(set) > 0 {
		ops = append(ops,
			jsonOp{Op: "test", Path: base, Value: nil},
			jsonOp{Op: "add", Path: base, Value: map[string]string{}})
	}
	for _, k := range sortedKeys(set) {
		if k == "" {
			return nil, invalidActionf("patch of %s sets an empty %s key", act.Pod, field)
		}
		ops = append(ops, jsonOp{Op: "add", Path: base + "/" + escapePointer(k), Value: set[k]})
	}
	for _, k := range removed {
		ops = append(ops, jsonOp{Op: "remove", Path: base + "/" + escapePointer(k)})
	}
	return ops, nil
}

func (a *Actuator) patch(ctx context.Context, act planner.Action) (string, error) {
	ns, name, err := podRef(act)
	if err != nil {
		return "", err
	}
	body, err := patchBody(act)
	if err != nil {
		return "", err
	}
	pod, err := a.kube.CoreV1().Pods(ns).Patch(ctx, name, types.JSONPatchType, body, a.patchOptions())
	if err != nil {
		return "", err
	}
	return pod.ResourceVersion, nil
}

// resizeBody is the strategic-merge patch of pods/resize: containers merge
// on name, so only the named containers' resources change, and within
// them only the resources named (requests and limits are maps).
func resizeBody(act planner.Action) ([]byte, error) {
	if len(act.Resources) == 0 {
		return nil, invalidActionf("resize of %s changes nothing", act.Pod)
	}
	containers := make([]map[string]any, 0, len(act.Resources))
	for _, r := range act.Resources {
		if r.Name == "" || len(r.Requests)+len(r.Limits) == 0 {
			return nil, invalidActionf("resize of %s: empty change for container %q", act.Pod, r.Name)
		}
		res := map[string]any{}
		for field, m := range map[string]map[string]string{"requests": r.Requests, "limits": r.Limits} {
			if len(m) == 0 {
				continue
			}
			q := map[string]string{}
			for k, v := range m {
				// Checked here so a typo is refused with the container's
				// name, before it costs a write.
				if _, err := resource.ParseQuantity(v); err != nil {
					return nil, invalidActionf("resize of %s: container %q %s[%s]=%q: %v", act.Pod, r.Name, field, k, v, err)
				}
				q[k] = v
			}
			res[field] = q
		}
		containers = append(containers, map[string]any{"name": r.Name, "resources": res})
	}
	body := map[string]any{
		"metadata": uidMeta{UID: types.UID(act.UID)},
		"spec":     map[string]any{"containers": containers},
	}
	return json.Marshal(body)
}

func (a *Actuator) resize(ctx context.Context, act planner.Action) (string, error) {
	ns, name, err := podRef(act)
	if err != nil {
		return "", err
	}
	body, err := resizeBody(act)
	if err != nil {
		return "", err
	}
	pod, err := a.kube.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, body, a.patchOptions(), "resize")
	if err != nil {
		return "", err
	}
	return pod.ResourceVersion, nil
}

// recreate evicts the pod if, and only if, it is still the one with the
// planned UID; its workload creates the replacement. An eviction, unlike a
// DELETE, is refused while the pod's PodDisruptionBudget allows no
// disruption: a recreate never takes more pods down than the budget says.
//
// The answer is a bare Status, without the pod: there is no resourceVersion
// to return, so the success carries none, and the recreate stays pending
// until the watch shows the pod terminating or replaced.
func (a *Actuator) recreate(ctx context.Context, act planner.Action) (string, error) {
	ns, name, err := podRef(act)
	if err != nil {
		return "", err
	}
	uid := types.UID(act.UID)
	ev := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: name, Namespace: ns},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	}
	if err := a.kube.PolicyV1().Evictions(ns).Evict(ctx, ev); err != nil {
		return "", budgetError(err)
	}
	return "", nil
}

func (a *Actuator) patchOptions() metav1.PatchOptions {
	return metav1.PatchOptions{FieldManager: a.opts.FieldManager}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Deterministic bytes for equal actions: logs and captures compare.
	slices.Sort(keys)
	return keys
}
