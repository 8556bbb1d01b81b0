package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/projections"
)

// statusVerb waits for a rollout the way `kubectl rollout status` waits
// for a Deployment: it prints progress as it changes and returns when the
// rollout of the current revision ends: exit 0 when it succeeded, 1 when
// it failed (Failed, RolledBack, aborted, or paused by a failure). A pause
// the user asked for (spec.paused, a step) is waited through, saying how
// to go on.
//
// NB: right after a template change the rollout's status still describes
// the previous revision, phase Succeeded included. So the wait is over
// only once the status covers the current spec (status.observedGeneration
// = metadata.generation) and, for a workloadRef, the workload's current
// template (status.workloadGeneration = the workload's generation).
func statusVerb(ctx context.Context, e *env, args []string) error {
	fs := e.flags(true, false)
	watch := fs.BoolP("watch", "w", true, "wait for the rollout to end (false: print the status once)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: never)")
	if err := e.parse(args, 1); err != nil {
		return err
	}
	if err := e.connect(); err != nil {
		return err
	}
	deadline := time.Now().Add(*timeout)
	timedOut := func() bool { return *timeout > 0 && (ctx.Err() != nil || time.Until(deadline) < time.Second) }
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	name := fs.Arg(0)
	last := ""
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r, v, err := e.verdict(ctx, name)
		if err != nil {
			if timedOut() {
				return fmt.Errorf("timed out after %s waiting for rollout %s: %s", *timeout, name, last)
			}
			return err
		}
		if e.output != "" && (v.done || !*watch) {
			if err := ctl.Print(e.stdout, e.output, r.u.Object["status"]); err != nil {
				return err
			}
		} else if e.output == "" && v.line != last {
			fmt.Fprintln(e.stdout, v.line)
			last = v.line
		}
		switch {
		case v.failed:
			return errors.New(v.why)
		case v.done || !*watch:
			return nil
		}
		select {
		case <-ctx.Done():
			if timedOut() {
				return fmt.Errorf("timed out after %s waiting for rollout %s: %s", *timeout, name, v.line)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// verdict is what status says of a rollout at one instant.
type verdict struct {
	line         string // the progress line
	done, failed bool
	why          string // why it failed
}

func (e *env) verdict(ctx context.Context, name string) (rolloutOf, verdict, error) {
	u, err := e.rollout(ctx, name)
	if err != nil {
		return rolloutOf{}, verdict{}, err
	}
	r, err := decodeRollout(u)
	if err != nil {
		return r, verdict{}, err
	}
	st := r.status
	if st.ObservedGeneration < u.GetGeneration() {
		return r, verdict{line: fmt.Sprintf("Waiting for rollout %q spec update to be observed...", name)}, nil
	}
	if ref := r.spec.Target.WorkloadRef; ref != nil {
		gen, err := e.workloadGeneration(ctx, ref)
		if err != nil {
			return r, verdict{}, err
		}
		if st.WorkloadGeneration < gen {
			return r, verdict{line: fmt.Sprintf("Waiting for rollout %q to observe %s %s generation %d...", name, ref.Kind, ref.Name, gen)}, nil
		}
	}
	msg := func(types ...string) string {
		for _, t := range types {
			if c := r.condition(t); c != nil && c.Status == metav1.ConditionTrue && c.Message != "" {
				return c.Message
			}
		}
		return ""
	}
	progress := fmt.Sprintf("%d of %d updated pods are ready", st.UpdatedReady, st.Replicas)
	switch {
	case st.Phase == projections.PhaseSucceeded:
		return r, verdict{done: true, line: fmt.Sprintf("rollout %q successfully rolled out (revision %s%s): %s", name, st.TargetRevision, paren(st.WorkloadRevision), progress)}, nil
	case st.Phase == projections.PhaseFailed, st.Phase == projections.PhaseRolledBack:
		why := fmt.Sprintf("rollout %q %s: %s", name, st.Phase, orDash(msg("Aborted", "Invalid", "Failed", "NotInPlace", "Stalled", "RollingBack")))
		return r, verdict{done: true, failed: true, why: why, line: why}, nil
	case st.Phase == projections.PhasePaused && (r.condition("Failed") != nil && r.condition("Failed").Status == metav1.ConditionTrue):
		why := fmt.Sprintf("rollout %q paused on a failure: %s", name, msg("Failed"))
		return r, verdict{done: true, failed: true, why: why, line: why}, nil
	case st.Phase == projections.PhasePaused:
		return r, verdict{line: fmt.Sprintf("Rollout %q is paused (%s): %s; %s", name, orDash(msg("Paused", "HookTimedOut")), progress, resumeHint(r))}, nil
	}
	line := fmt.Sprintf("Waiting for rollout %q to finish: %d out of %d pods updated, %s, %d unavailable (phase %s)", name, st.Updated, st.Replicas, progress, st.Unavailable, orDash(st.Phase))
	// What the rollout waits on besides its pods: a step's analysis, a
	// lifecycle hook. Their messages change with each measurement and
	// wait, and each change is a new line.
	if a := st.Analysis; a != nil && a.Phase == projections.AnalysisRunning {
		var checks []string
		for _, c := range a.Checks {
			checks = append(checks, c.Name+" "+c.Phase+": "+c.Message)
		}
		line += fmt.Sprintf("; analysis of step %d: %s", a.Step, strings.Join(checks, "; "))
	}
	if m := msg("HookWaiting"); m != "" {
		line += "; " + m
	}
	return r, verdict{line: line}, nil
}

func resumeHint(r rolloutOf) string {
	if r.spec.Paused {
		return "kubectl rollbook resume " + r.u.GetName()
	}
	if c := r.condition("Paused"); c != nil && c.Reason == "StepPause" && int(r.status.CurrentStep) < len(r.spec.Strategy.Steps) && r.spec.Strategy.Steps[r.status.CurrentStep].Pause != nil {
		return "kubectl rollbook approve " + r.u.GetName()
	}
	return "waiting"
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

// workloadGeneration is the metadata.generation of a rollout's workload.
func (e *env) workloadGeneration(ctx context.Context, ref *projections.WorkloadRef) (int64, error) {
	gvr, err := workloadGVR(ref)
	if err != nil {
		return 0, err
	}
	u, err := dynamic.NewForConfigOrDie(e.cfg).Resource(gvr).Namespace(e.ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	return u.GetGeneration(), nil
}

func workloadGVR(ref *projections.WorkloadRef) (schema.GroupVersionResource, error) {
	switch ref.Kind {
	case "StatefulSet":
		return schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}, nil
	case "DaemonSet":
		return schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, nil
	}
	return schema.GroupVersionResource{}, fmt.Errorf("workloadRef kind %q: Rollbook rolls StatefulSets and DaemonSets", ref.Kind)
}
