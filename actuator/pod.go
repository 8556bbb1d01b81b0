package actuator

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	body := struct {
		Metadata uidMeta `json:"metadata"`
		Status   struct {
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}{Metadata: uidMeta{UID: types.UID(act.UID)}}
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
	return json.Marshal(body)
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
func patchBody(act planner.Action) ([]byte, error) {
	if len(act.Images) == 0 && len(act.Labels) == 0 && act.State == "" {
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
	if len(act.Labels) > 0 {
		if act.CreateLabels {
			ops = append(ops,
				jsonOp{Op: "test", Path: "/metadata/labels", Value: nil},
				jsonOp{Op: "add", Path: "/metadata/labels", Value: map[string]string{}})
		}
		for _, k := range sortedKeys(act.Labels) {
			ops = append(ops, jsonOp{Op: "add", Path: "/metadata/labels/" + escapePointer(k), Value: act.Labels[k]})
		}
	}
	if act.State != "" {
		if act.CreateAnnotations {
			ops = append(ops,
				jsonOp{Op: "test", Path: "/metadata/annotations", Value: nil},
				jsonOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{}})
		}
		ops = append(ops, jsonOp{Op: "add", Path: "/metadata/annotations/" + escapePointer(planner.StateAnnotation), Value: act.State})
	}
	return json.Marshal(ops)
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

// recreate deletes the pod if, and only if, it is still the one with the
// planned UID; its workload creates the replacement. The request goes
// through the REST client rather than the typed Delete, which drops the
// response: the object the server returns carries the resourceVersion of
// the deletion (or of the graceful-deletion mark), which the watch will
// show.
func (a *Actuator) recreate(ctx context.Context, act planner.Action) (string, error) {
	ns, name, err := podRef(act)
	if err != nil {
		return "", err
	}
	uid := types.UID(act.UID)
	background := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid},
		PropagationPolicy: &background,
	}
	var pod corev1.Pod
	err = a.kube.CoreV1().RESTClient().Delete().
		Namespace(ns).Resource("pods").Name(name).
		Body(&opts).Do(ctx).Into(&pod)
	if err != nil {
		return "", err
	}
	return pod.ResourceVersion, nil
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
