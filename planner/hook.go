package planner

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/projections"
)

// Lifecycle hooks hold a pod's update until another controller (the hook
// controller: an operator draining a database member, say) releases it.
//
//	gate ─▶ pre-update wait ─▶ patch ─▶ verify ─▶ ungate ─▶ post-update wait ─▶ done
//	  (marker pre-update)                   (marker post-update)
//
// The pre-update wait runs while the pod is gated, out of Service
// endpoints, and alongside the grace period: the patch comes once both are
// over. The post-update wait runs after the ungate, with the pod back in
// Service endpoints, as a rejoining member usually needs (to catch up
// replication, to be health-checked through its Service); until released
// the update is not finished: the pod counts against maxUnavailable, so
// the next member is not started, and the rollout does not succeed.
//
// No write is added for this: the marker, and the clearing of the hook's
// release, ride on the gate and ungate writes (pods/status patches may set
// labels). Clearing the release in the write that sets the marker is what
// makes a release count for one wait only: one left from an earlier
// update is gone before the planner can see the marker. After a post-update
// release the marker stays post-update (removing it would be a fourth
// write); the next gate sets pre-update.
//
// Invariants: a pod is never patched while its pre-update wait is neither
// released nor timed out with onTimeout Proceed; a pod released before its
// patch (the rollout paused, stopped or deleted) loses the marker in the
// ungate that releases it, so the hook controller knows to undo its drain.

// Names of the hook marker.
const (
	// HookLabel is the pod label that says what Rollbook waits for.
	HookLabel = "rollbook.dev/hook"
	// HookPreUpdate: gated and waiting for the pre-update release.
	HookPreUpdate = "pre-update"
	// HookPostUpdate: updated, verified, ungated; waiting for the
	// post-update release (or released, when it is there).
	HookPostUpdate = "post-update"
	// ReasonHookWaiting is the reason of a hook's release condition when
	// Rollbook clears it (status False) at the start of a wait.
	ReasonHookWaiting = "RollbookWaiting"
)

// defaultHookTimeout is a hook's timeoutSeconds when unset.
const defaultHookTimeout = 600

type hookState int

const (
	hookNone     hookState = iota // no hook holds the pod
	hookWaiting                   // marked, not released, within the timeout
	hookReleased                  // the release is on the pod
	hookTimedOut                  // not released within the timeout
	hookUnmarked                  // gated without the pre-update marker (before the hook was configured)
)

// hookWait is where a pod stands at one hook.
type hookWait struct {
	state hookState
	hook  *projections.LifecycleHook
	which string // HookPreUpdate or HookPostUpdate
	// since is when the wait began (the marker's write), until when it
	// times out.
	since, until int64
}

func preHook(spec projections.RolloutSpec) *projections.LifecycleHook {
	if spec.Lifecycle == nil {
		return nil
	}
	return spec.Lifecycle.PreUpdate
}

func postHook(spec projections.RolloutSpec) *projections.LifecycleHook {
	if spec.Lifecycle == nil {
		return nil
	}
	return spec.Lifecycle.PostUpdate
}

func hookTimeout(h *projections.LifecycleHook) int64 {
	s := int64(defaultHookTimeout)
	if h.TimeoutSeconds != nil {
		s = int64(*h.TimeoutSeconds)
	}
	return s * 1e9
}

func proceeds(h *projections.LifecycleHook) bool { return h.OnTimeout == "Proceed" }

// waitAt places a pod marked with which at hook h, the wait having begun
// at since.
func waitAt(p *projections.Pod, h *projections.LifecycleHook, which string, since, now int64) hookWait {
	w := hookWait{hook: h, which: which, since: since, until: since + hookTimeout(h)}
	switch {
	// NB: a pod journaled truncated (too large) has no labels on record:
	// gating it again for a marker the planner can never see would loop.
	// It waits for a release it can see (a condition) or its timeout.
	case p.Label(HookLabel) != which && p.Truncated == "":
		w.state = hookUnmarked
	case released(p, h):
		w.state = hookReleased
	case now >= w.until:
		w.state = hookTimedOut
	default:
		w.state = hookWaiting
	}
	return w
}

// released: the hook controller has set the hook's release on the pod.
func released(p *projections.Pod, h *projections.LifecycleHook) bool {
	if h.Label != nil {
		v, ok := p.LookupLabel(h.Label.Key)
		return ok && v == h.Label.Value
	}
	for _, c := range p.Pod.Conditions {
		if c.Type() == h.Condition {
			return c.Status() == "True"
		}
	}
	return false
}

// describeHook names what releases a pod at h.
func describeHook(which string, h *projections.LifecycleHook) string {
	if h.Label != nil {
		return fmt.Sprintf("%s hook (label %s=%s)", which, h.Label.Key, h.Label.Value)
	}
	return fmt.Sprintf("%s hook (condition %s=True)", which, h.Condition)
}

// mark makes a gate or ungate write also set the marker and clear the
// hook's release.
func mark(a *Action, h *projections.LifecycleHook, which string) {
	a.Labels = map[string]string{HookLabel: which}
	if h.Label != nil {
		a.RemoveLabels = []string{h.Label.Key}
	} else {
		a.ClearConditions = []string{h.Condition}
	}
}

// unmark makes an ungate write remove the marker, if the pod has one.
func unmark(a Action, p *projections.Pod) Action {
	if _, ok := p.LookupLabel(HookLabel); ok {
		a.RemoveLabels = []string{HookLabel}
	}
	return a
}

// gate is the write that takes a pod out of Service endpoints before its
// update; with a pre-update hook it also marks the pod and clears the
// release. With a pre-update hook every pod is gated first, one without
// the readiness gate or whose changes skip the drain included: the hook
// is asked before any patch.
func (p *planning) gate(rp *rolloutPlan, pp *podPlan) Action {
	rk, rev := rp.r.Key(), revOf(pp, rp.t.rev)
	a := Action{Kind: Gate, Pod: pp.pod.Key(), UID: pp.pod.UID.String(), Rollout: rk, Revision: rev, Reason: ReasonUpdating, Message: "rollout " + rk + " revision " + rev}
	if h := preHook(rp.spec); h != nil {
		mark(&a, h, HookPreUpdate)
	}
	return a
}

// verifiedUngate returns a verified pod to Service endpoints; with a
// post-update hook, for a pod this rollout patched, the same write marks
// it post-update and clears the release. Otherwise it removes a marker
// left from the pre-update wait: the update is over.
func (p *planning) verifiedUngate(rp *rolloutPlan, pp *podPlan) Action {
	rev := revOf(pp, rp.t.rev)
	a := Action{Kind: Ungate, Pod: pp.pod.Key(), UID: pp.pod.UID.String(), Rollout: rp.r.Key(), Revision: rev, Reason: ReasonReady, Message: "revision " + rev + " verified"}
	if h := postHook(rp.spec); h != nil {
		if st := pp.state(); st != nil && st.Revision() == pp.rev {
			mark(&a, h, HookPostUpdate)
			return a
		}
	}
	return unmark(a, pp.pod)
}

// waitHook drives a gated pod through its pre-update wait and says
// whether the patch may go on.
func (p *planning) waitHook(rp *rolloutPlan, pp *podPlan) bool {
	w := pp.hook()
	switch pp.hookState() {
	case hookUnmarked:
		// Gated before the rollout had the hook: gate again, with the marker.
		p.try(p.gate(rp, pp))
		return false
	case hookWaiting:
		p.wake(w.until)
		return false
	case hookTimedOut:
		p.hookTimeoutEvent(rp, pp)
		return proceeds(w.hook)
	}
	return true
}

func (p *planning) hookTimeoutEvent(rp *rolloutPlan, pp *podPlan) {
	w := pp.hook()
	then := "the rollout is paused and the pod stays held until it is released"
	if proceeds(w.hook) {
		then = "it goes on without the release (onTimeout: Proceed)"
	}
	p.event(rp.r, "Warning", "HookTimeout", fmt.Sprintf("%s: the %s did not release it within %ds; %s (revision %s)",
		pp.pod.Name, describeHook(w.which, w.hook), hookTimeout(w.hook)/1e9, then, revOf(pp, rp.t.rev)))
}

// reportHooks sets the HookWaiting and HookTimedOut conditions. They are
// set only for a rollout with hooks, or one that had them.
func (p *planning) reportHooks(rp *rolloutPlan) {
	n, conds := &rp.n, rp.conds
	if rp.spec.Lifecycle == nil && !conds.has("HookWaiting") && !conds.has("HookTimedOut") {
		return
	}
	if len(n.hookWaiting) > 0 {
		conds.set("HookWaiting", "True", "Waiting", waitingMessage(n.hookWaiting))
	} else {
		conds.set("HookWaiting", "False", "NotWaiting", "")
	}
	switch {
	case len(n.hookPaused) > 0:
		w := n.hookPaused[0].hook()
		conds.set("HookTimedOut", "True", "Paused", fmt.Sprintf(
			"%d pods were not released by their lifecycle hook in time, first %s by its %s, waiting since %s: the rollout is paused and they stay held (a pre-update pod gated, out of Service endpoints). Release them (the hook controller, or set the release yourself) and the rollout goes on",
			len(n.hookPaused), n.hookPaused[0].pod.Name, describeHook(w.which, w.hook), stamp(w.since)))
	case len(n.hookProceeded) > 0:
		w := n.hookProceeded[0].hook()
		conds.set("HookTimedOut", "True", "Proceeded", fmt.Sprintf(
			"%s was not released by its %s within %ds and went on without it (onTimeout: Proceed); every such pod is a Warning Event HookTimeout",
			n.hookProceeded[0].pod.Name, describeHook(w.which, w.hook), hookTimeout(w.hook)/1e9))
	case conds.is("HookTimedOut") && conds.reason("HookTimedOut") == "Paused":
		conds.set("HookTimedOut", "False", "Released", "")
	}
}

// waitingMessage names the pods waited on (the first three), since when,
// and what their timeout will do.
func waitingMessage(pods []*podPlan) string {
	var parts []string
	for _, pp := range pods[:min(len(pods), 3)] {
		w := pp.hook()
		then := "pause"
		if proceeds(w.hook) {
			then = "proceed"
		}
		parts = append(parts, fmt.Sprintf("%s for its %s since %s (%s after %ds)", pp.pod.Name, describeHook(w.which, w.hook), stamp(w.since), then, hookTimeout(w.hook)/1e9))
	}
	more := ""
	if len(pods) > 3 {
		more = fmt.Sprintf(" and %d more", len(pods)-3)
	}
	return fmt.Sprintf("%d pods wait for a lifecycle hook: %s%s", len(pods), strings.Join(parts, ", "), more)
}

func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// hookProblem says why a hook cannot work with these pods, or "": the
// release label is removed when a wait begins, so it must not be a label
// the workload's selector or template sets (the schema refuses only the
// labels it knows of); and a release condition must be one the fold keeps,
// not one the kubelet or the scheduler sets.
func hookProblem(spec projections.RolloutSpec, t target) string {
	if spec.Lifecycle == nil {
		return ""
	}
	for _, hk := range []struct {
		name string
		h    *projections.LifecycleHook
	}{{"preUpdate", spec.Lifecycle.PreUpdate}, {"postUpdate", spec.Lifecycle.PostUpdate}} {
		if hk.h != nil && hk.h.Condition != "" && !projections.KeepsCondition(hk.h.Condition) {
			return fmt.Sprintf("spec.lifecycle.%s.condition %s is a condition the kubelet or the scheduler sets, not a hook's release: name a condition only the hook controller sets, such as example.com/Drained", hk.name, hk.h.Condition)
		}
		if hk.h == nil || hk.h.Label == nil {
			continue
		}
		k, used := hk.h.Label.Key, ""
		switch {
		case t.workload != nil && t.workload.Workload.Selector[k] != "":
			used = "the workload's selector"
		case t.to != nil && t.to.Labels[k] != "":
			used = "the pod template"
		case selectorUses(spec.Target.Selector, k):
			used = "spec.target.selector"
		}
		if used != "" {
			return fmt.Sprintf("spec.lifecycle.%s.label.key %s is a label %s uses, and Rollbook removes the release label when a wait begins: name a label only the hook controller sets, such as example.com/drained", hk.name, k, used)
		}
	}
	return ""
}

func selectorUses(sel *metav1.LabelSelector, key string) bool {
	if sel == nil {
		return false
	}
	if _, ok := sel.MatchLabels[key]; ok {
		return true
	}
	for _, e := range sel.MatchExpressions {
		if e.Key == key {
			return true
		}
	}
	return false
}
