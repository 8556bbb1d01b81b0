package main

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"rollbook.dev/rollbook/projections"
)

// The verbs that steer a rollout edit its spec, as a user would with
// kubectl edit: the controller reads the spec and nothing else. Each edit
// is a merge patch carrying the resourceVersion it was decided on, so an
// edit is never applied to a rollout other than the one it was decided on
// (approving a step nobody looked at): on a conflict it is decided again.

// patchSpec merge-patches the rollout's spec with fields, conditional on
// resourceVersion rv when rv is not "".
func (e *env) patchSpec(ctx context.Context, name, rv string, fields map[string]any) error {
	p := map[string]any{"spec": fields}
	if rv != "" {
		p["metadata"] = map[string]any{"resourceVersion": rv}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = e.dynamic().Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{})
	return err
}

// simpleEdit is a verb that sets spec fields on the named rollout.
func simpleEdit(ctx context.Context, e *env, args []string, done string, fields func(r rolloutOf) (map[string]any, error)) error {
	e.flags(false, false)
	if err := e.parse(args, 1); err != nil {
		return err
	}
	if err := e.connect(); err != nil {
		return err
	}
	name := e.fs.Arg(0)
	// The controller's status writes move the resourceVersion too: on a
	// conflict the edit is decided again on the rollout as it is now.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := e.rollout(ctx, name)
		if err != nil {
			return err
		}
		r, err := decodeRollout(u)
		if err != nil {
			return err
		}
		f, err := fields(r)
		if err != nil {
			return err
		}
		return e.patchSpec(ctx, name, u.GetResourceVersion(), f)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "inplacerollout.rollbook.dev/%s %s\n", name, done)
	return nil
}

func pauseVerb(ctx context.Context, e *env, args []string) error {
	return simpleEdit(ctx, e, args, "paused", func(rolloutOf) (map[string]any, error) {
		return map[string]any{"paused": true}, nil
	})
}

// resumeVerb lets a paused or aborted rollout go on.
func resumeVerb(ctx context.Context, e *env, args []string) error {
	return simpleEdit(ctx, e, args, "resumed", func(r rolloutOf) (map[string]any, error) {
		if !r.spec.Paused && !r.spec.Abort {
			return nil, fmt.Errorf("%s is neither paused nor aborted (phase %s): nothing to resume; a step pause is approved with kubectl rollbook approve", r.u.GetName(), orDash(r.status.Phase))
		}
		return map[string]any{"paused": nil, "abort": nil}, nil
	})
}

// abortVerb sets spec.abort: the controller releases every gate at once,
// pods in the middle of an update included, and the rollout stops (Failed,
// Aborted=True) until resumed.
func abortVerb(ctx context.Context, e *env, args []string) error {
	return simpleEdit(ctx, e, args, "aborted", func(rolloutOf) (map[string]any, error) {
		return map[string]any{"abort": true}, nil
	})
}

// approveVerb releases the indefinite step pause (`pause: {}`) the rollout
// waits at: step i holds until spec.approvedSteps exceeds
// status.approvedStepsBase + i.
func approveVerb(ctx context.Context, e *env, args []string) error {
	return simpleEdit(ctx, e, args, "approved", func(r rolloutOf) (map[string]any, error) {
		st, steps := r.status, r.spec.Strategy.Steps
		if !waitsForApproval(r) {
			return nil, fmt.Errorf("%s is not waiting for an approval (phase %s, step %d of %d)", r.u.GetName(), orDash(st.Phase), st.CurrentStep, len(steps))
		}
		return map[string]any{"approvedSteps": st.ApprovedStepsBase + st.CurrentStep + 1}, nil
	})
}

// waitsForApproval: the rollout holds at a step whose pause has no
// duration, and that step is not approved yet.
func waitsForApproval(r rolloutOf) bool {
	st, steps := r.status, r.spec.Strategy.Steps
	c := r.condition("Paused")
	return st.Phase == projections.PhasePaused && c != nil && c.Reason == "StepPause" &&
		int(st.CurrentStep) < len(steps) && steps[st.CurrentStep].Pause != nil &&
		r.spec.ApprovedSteps <= st.ApprovedStepsBase+st.CurrentStep
}
