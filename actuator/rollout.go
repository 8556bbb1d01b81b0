package actuator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"rollbook.dev/rollbook/planner"
)

// EventSource is the component named in the Events the actuator creates.
const EventSource = "rollbook"

// rolloutRef checks what every rollout action needs: the rollout and its
// UID, the precondition that keeps a write off a rollout deleted and
// created again under the same name.
func rolloutRef(act planner.Action) (ns, name string, err error) {
	ns, name, err = splitRef("rollout", act.Rollout)
	if err != nil {
		return "", "", err
	}
	if act.RolloutUID == "" {
		return "", "", invalidActionf("%s of %s has no RolloutUID precondition", act.Kind, act.Rollout)
	}
	return ns, name, nil
}

// statusBody is the JSON patch (RFC 6902) of the rollout's status
// subresource: `test /metadata/uid`, then `add /status` with the whole
// status the planner computed (add replaces a member that exists).
//
// NB: not a merge patch carrying metadata.uid, as for pods. Found against
// kube-apiserver v1.37.2: the status strategy of custom resources starts
// from the stored object and takes only .status from the patched one, so a
// metadata.uid in a merge patch is silently dropped and the write lands on
// a rollout recreated under the same name. A JSON-patch `test` runs against
// the stored object before any strategy, so it holds. Replacing the status
// whole also means a field the planner no longer sets (a cleared condition
// list, an empty traceID) disappears instead of lingering, which a merge
// patch of an omitempty encoding would leave behind. The status is
// Rollbook's alone ("written by the controller only"), so nothing else's
// fields are lost.
//
// Conditions without a lastTransitionTime get now: the schema requires one
// and the planner, which reads no clock, may leave it to the actuator.
func statusBody(act planner.Action, now time.Time) ([]byte, error) {
	if act.Status == nil {
		return nil, invalidActionf("status of %s has no status", act.Rollout)
	}
	st := *act.Status // the action is a value shared with the journal: never mutate it
	st.Conditions = slices.Clone(st.Conditions)
	for i := range st.Conditions {
		if st.Conditions[i].LastTransitionTime.IsZero() {
			st.Conditions[i].LastTransitionTime = metav1.NewTime(now)
		}
	}
	return json.Marshal([]jsonOp{
		{Op: "test", Path: "/metadata/uid", Value: act.RolloutUID},
		{Op: "add", Path: "/status", Value: st},
	})
}

func (a *Actuator) status(ctx context.Context, act planner.Action) (string, error) {
	ns, name, err := rolloutRef(act)
	if err != nil {
		return "", err
	}
	body, err := statusBody(act, a.opts.Clock())
	if err != nil {
		return "", err
	}
	u, err := a.dyn.Resource(RolloutsGVR).Namespace(ns).Patch(ctx, name, types.JSONPatchType, body, a.patchOptions(), "status")
	if err != nil {
		return "", err
	}
	return u.GetResourceVersion(), nil
}

// eventName is deterministic in the action's key and the rollout's UID, so
// a retried Event (a timeout whose create did land) meets AlreadyExists
// instead of recording the event twice. The name stays a DNS subdomain
// (at most 253 characters) whatever the rollout's name.
func eventName(act planner.Action, rollout string) string {
	sum := sha256.Sum256([]byte(act.Key() + "\x00" + act.RolloutUID))
	suffix := hex.EncodeToString(sum[:8])
	if max := 253 - 1 - len(suffix); len(rollout) > max {
		rollout = strings.TrimRight(rollout[:max], ".-")
	}
	return rollout + "." + suffix
}

func eventObject(act planner.Action, ns, name string, now time.Time) (*corev1.Event, error) {
	if act.Reason == "" {
		return nil, invalidActionf("event on %s has no reason", act.Rollout)
	}
	typ := act.EventType
	if typ == "" {
		typ = corev1.EventTypeNormal
	}
	if typ != corev1.EventTypeNormal && typ != corev1.EventTypeWarning {
		return nil, invalidActionf("event on %s has type %q, want Normal or Warning", act.Rollout, typ)
	}
	t := metav1.NewTime(now)
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: eventName(act, name), Namespace: ns},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: RolloutsGVR.GroupVersion().String(),
			Kind:       "InPlaceRollout",
			Namespace:  ns,
			Name:       name,
			UID:        types.UID(act.RolloutUID),
		},
		Reason:         act.Reason,
		Message:        act.Message,
		Type:           typ,
		Source:         corev1.EventSource{Component: EventSource},
		FirstTimestamp: t,
		LastTimestamp:  t,
		Count:          1,
	}, nil
}

func (a *Actuator) event(ctx context.Context, act planner.Action) (string, error) {
	ns, name, err := rolloutRef(act)
	if err != nil {
		return "", err
	}
	ev, err := eventObject(act, ns, name, a.opts.Clock())
	if err != nil {
		return "", err
	}
	out, err := a.kube.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{FieldManager: a.opts.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		// The same event, recorded by an earlier attempt: done. No
		// resourceVersion without a read, and none is needed: nothing
		// waits to observe events.
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return out.ResourceVersion, nil
}
