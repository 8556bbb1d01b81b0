package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/projections"
)

// rolloutOf is an InPlaceRollout's spec and status, decoded.
type rolloutOf struct {
	u      *unstructured.Unstructured
	spec   projections.RolloutSpec
	status projections.RolloutStatus
}

func decodeRollout(u *unstructured.Unstructured) (rolloutOf, error) {
	r := rolloutOf{u: u}
	for field, v := range map[string]any{"spec": &r.spec, "status": &r.status} {
		raw, err := json.Marshal(u.Object[field])
		if err != nil {
			return r, err
		}
		if string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return r, fmt.Errorf("%s %s: %w", u.GetName(), field, err)
		}
	}
	return r, nil
}

// condition returns the status condition of type typ, nil if unset.
func (r rolloutOf) condition(typ string) *metav1.Condition {
	for i := range r.status.Conditions {
		if r.status.Conditions[i].Type == typ {
			return &r.status.Conditions[i]
		}
	}
	return nil
}

func (r rolloutOf) ready() string {
	if c := r.condition("Ready"); c != nil {
		return string(c.Status)
	}
	return "Unknown"
}

// getVerb lists rollouts (or shows one) as the apiserver has them.
func getVerb(ctx context.Context, e *env, args []string) error {
	fs := e.flags(true, false)
	all := fs.BoolP("all-namespaces", "A", false, "list the rollouts of every namespace")
	if err := e.parse(args, -1); err != nil {
		return err
	}
	if err := e.connect(); err != nil {
		return err
	}
	ri := dynamic.NewForConfigOrDie(e.cfg).Resource(ingest.Rollouts.GVR)
	var items []unstructured.Unstructured
	if name := fs.Arg(0); name != "" {
		u, err := e.rollout(ctx, name)
		if err != nil {
			return err
		}
		if e.output != "" {
			return ctl.Print(e.stdout, e.output, u.Object)
		}
		items = []unstructured.Unstructured{*u}
	} else {
		ns := e.ns
		if *all {
			ns = ""
		}
		list, err := ri.Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if e.output != "" {
			return ctl.Print(e.stdout, e.output, list.UnstructuredContent())
		}
		items = list.Items
		if len(items) == 0 {
			fmt.Fprintf(e.stderr, "No InPlaceRollouts found in %s.\n", orAll(ns))
			return nil
		}
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	if *all {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tPHASE\tREADY\tUPDATED\tAVAILABLE\tSTEP\tREVISION\tWORKLOAD REVISION\tAGE")
	for i := range items {
		r, err := decodeRollout(&items[i])
		if err != nil {
			return err
		}
		st := r.status
		if *all {
			fmt.Fprintf(tw, "%s\t", r.u.GetNamespace())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%s\t%s\t%s\n", r.u.GetName(), orDash(st.Phase), r.ready(), st.Updated, st.Replicas, st.UpdatedReady,
			st.CurrentStep, orDash(st.TargetRevision), orDash(st.WorkloadRevision), duration.HumanDuration(time.Since(r.u.GetCreationTimestamp().Time)))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orAll(ns string) string {
	if ns == "" {
		return "any namespace"
	}
	return "namespace " + ns
}
