package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// ReadRollout reads an InPlaceRollout manifest (YAML or JSON).
func ReadRollout(path string) (*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if u.GetKind() != "InPlaceRollout" {
		return nil, fmt.Errorf("%s: kind %q, want InPlaceRollout", path, u.GetKind())
	}
	return &u, nil
}

// Folded is a state to plan over and the sequence of its last record.
type Folded struct {
	State *projections.State
	Seq   uint64
}

// FoldSource folds a journal source for a dry run, from its newest
// checkpoint (Source.ReadLatest).
func FoldSource(ctx context.Context, src Source) (Folded, error) {
	f := Folded{State: projections.New()}
	base := func(b *projections.Books) error { f.State, f.Seq = b.State, b.State.Seq; return nil }
	err := src.ReadLatest(ctx, base, func(r journal.Record) error { f.Seq = r.Seq; return f.State.Apply(r) })
	return f, err
}

// FoldCluster lists what the planner needs from a namespace (read only:
// lists, with the caller's own rights) into a state.
func FoldCluster(ctx context.Context, client dynamic.Interface, ns string) (Folded, error) {
	f := Folded{State: projections.New()}
	now := time.Now()
	for _, res := range []ingest.Resource{ingest.Nodes, ingest.StatefulSets, ingest.DaemonSets, ingest.ControllerRevisions, ingest.Pods, ingest.Rollouts} {
		ri := client.Resource(res.GVR)
		var list *unstructured.UnstructuredList
		var err error
		if res.Namespaced {
			list, err = ri.Namespace(ns).List(ctx, metav1.ListOptions{})
		} else {
			list, err = ri.List(ctx, metav1.ListOptions{})
		}
		if err != nil {
			return f, fmt.Errorf("listing %s: %w", res.Name(), err)
		}
		for i := range list.Items {
			o, err := ingest.Compact(res, &list.Items[i])
			if err != nil {
				return f, err
			}
			if err := f.apply(now, journal.KindObserved, ingest.Key(res.Name(), o.Namespace, o.Name), &o); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

func (f *Folded) apply(now time.Time, kind journal.Kind, key string, v any) error {
	body, err := journal.EncodeBody(v)
	if err != nil {
		return err
	}
	f.Seq++
	return f.State.Apply(journal.Record{Seq: f.Seq, Time: now, Kind: kind, Key: key, Body: body})
}

// Preview is a dry run of rollout u over f: the rollout as if created now,
// the youngest (older rollouts keep their pods). f's state is changed.
func Preview(f Folded, u *unstructured.Unstructured) (planner.PreviewResult, error) {
	ns := u.GetNamespace()
	spec, err := json.Marshal(u.Object["spec"])
	if err != nil {
		return planner.PreviewResult{}, err
	}
	now := time.Now()
	obs := journal.Observed{Resource: ingest.Rollouts.Name(), Namespace: ns, Name: u.GetName(), UID: "dry-run", ResourceVersion: "0", Spec: spec, Created: now.UnixNano()}
	if err := f.apply(now, journal.KindObserved, ingest.Key(ingest.Rollouts.Name(), ns, u.GetName()), &obs); err != nil {
		return planner.PreviewResult{}, err
	}
	if err := f.apply(now, journal.KindTick, "tick", journal.TickFact{Reason: "dry run"}); err != nil {
		return planner.PreviewResult{}, err
	}
	return planner.Preview(f.State, ns+"/"+u.GetName()), nil
}

// planPod is one pod of `plan -o json|yaml`.
type planPod struct {
	Batch  int    `json:"batch"`
	Step   int    `json:"step"`
	Pod    string `json:"pod"`
	Node   string `json:"node,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Action string `json:"action,omitempty"`
	Stage  string `json:"stage,omitempty"`
	Why    string `json:"why,omitempty"`
}

// PrintPlan writes a dry run's result as a table (format "") or as JSON or
// YAML. from names what was planned over.
func PrintPlan(w io.Writer, format, from string, s *projections.State, res planner.PreviewResult) error {
	zone := func(node string) string {
		if n := s.Nodes[node]; n != nil && n.Node != nil {
			return n.Node.Labels["topology.kubernetes.io/zone"]
		}
		return ""
	}
	if format != "" {
		out := struct {
			Rollout        string    `json:"rollout"`
			From           string    `json:"from"`
			Problem        string    `json:"problem,omitempty"`
			Revision       string    `json:"revision,omitempty"`
			Replicas       int       `json:"replicas"`
			MaxUnavailable int       `json:"maxUnavailable"`
			Partition      int       `json:"partition"`
			AlreadyUpdated int       `json:"alreadyUpdated"`
			Conflicts      []string  `json:"conflicts,omitempty"`
			Pods           []planPod `json:"pods"`
		}{Rollout: res.Rollout, From: from, Problem: res.Problem, Revision: res.Revision, Replicas: res.Replicas, MaxUnavailable: res.MaxUnavailable,
			Partition: res.Partition, AlreadyUpdated: res.AlreadyUpdated, Conflicts: res.Conflicts, Pods: []planPod{}}
		for _, p := range res.Pods {
			out.Pods = append(out.Pods, planPod{Batch: p.Batch, Step: p.Step, Pod: p.Pod, Node: p.Node, Zone: zone(p.Node), Action: p.Action, Stage: p.Stage, Why: p.Why})
		}
		if err := Print(w, format, out); err != nil {
			return err
		}
		if res.Problem != "" {
			return fmt.Errorf("the rollout would not run: %s", res.Problem)
		}
		return nil
	}
	fmt.Fprintf(w, "dry run of %s against %s: nothing is written\n", res.Rollout, from)
	if res.Problem != "" {
		return fmt.Errorf("the rollout would not run: %s", res.Problem)
	}
	fmt.Fprintf(w, "revision %s, %d pods, maxUnavailable %d, partition %d, already updated %d\n", res.Revision, res.Replicas, res.MaxUnavailable, res.Partition, res.AlreadyUpdated)
	if len(res.Conflicts) > 0 {
		fmt.Fprintf(w, "left to older rollouts: %d pods, e.g. %v\n", len(res.Conflicts), res.Conflicts[:min(3, len(res.Conflicts))])
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tSTEP\tPOD\tNODE\tZONE\tFIRST\tWHY")
	for _, p := range res.Pods {
		b := "-"
		if p.Batch > 0 {
			b = fmt.Sprint(p.Batch)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", b, p.Step, p.Pod, p.Node, zone(p.Node), p.Action, p.Why)
	}
	return tw.Flush()
}
