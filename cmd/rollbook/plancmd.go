package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
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

// planCmd is a dry run: which pods a rollout would update, in which batch
// and why, against the live cluster (read only: lists) or a journal.
// Nothing is written anywhere.
func planCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plan", flag.ContinueOnError)
	file := fs.String("f", "", "the InPlaceRollout manifest (YAML or JSON)")
	src := sourceFlags(fs)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "plan against this cluster (when no journal source is given)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("usage: rollbook plan -f rollout.yaml [--dir JOURNAL | --kubeconfig FILE]")
	}
	raw, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(js); err != nil {
		return fmt.Errorf("%s: %w", *file, err)
	}
	if u.GetKind() != "InPlaceRollout" {
		return fmt.Errorf("%s: kind %q, want InPlaceRollout", *file, u.GetKind())
	}
	ns := u.GetNamespace()
	if ns == "" {
		ns = "default"
	}
	s := projections.New()
	var seq uint64
	fold := func(r journal.Record) error { seq = r.Seq; return s.Apply(r) }
	from := "journal"
	if src.dir != "" || src.export != "" || src.nats.URL != "" {
		base := func(b *projections.Books) error { s, seq = b.State, b.State.Seq; return nil }
		if err := src.readFrom(ctx, base, fold); err != nil {
			return err
		}
		from = src.describe()
	} else {
		cfg, err := loadConfig(*kubeconfig)
		if err != nil {
			return err
		}
		if err := foldCluster(ctx, dynamic.NewForConfigOrDie(cfg), ns, s, &seq); err != nil {
			return err
		}
		from = "cluster " + cfg.Host
	}
	// The rollout as if created now, the youngest: older rollouts keep
	// their pods.
	spec, _ := json.Marshal(u.Object["spec"])
	now := time.Now()
	obs := journal.Observed{Resource: ingest.Rollouts.Name(), Namespace: ns, Name: u.GetName(), UID: "dry-run", ResourceVersion: "0", Spec: spec, Created: now.UnixNano()}
	for _, e := range []journal.Entry{
		{Kind: journal.KindObserved, Key: ingest.Key(ingest.Rollouts.Name(), ns, u.GetName()), Body: mustBody(&obs)},
		{Kind: journal.KindTick, Key: "tick", Body: mustBody(journal.TickFact{Reason: "dry run"})},
	} {
		seq++
		if err := s.Apply(journal.Record{Seq: seq, Time: now, Kind: e.Kind, Key: e.Key, Body: e.Body}); err != nil {
			return err
		}
	}
	res := planner.Preview(s, ns+"/"+u.GetName())
	fmt.Printf("dry run of %s/%s against %s: nothing is written\n", ns, u.GetName(), from)
	if res.Problem != "" {
		return fmt.Errorf("the rollout would not run: %s", res.Problem)
	}
	fmt.Printf("revision %s, %d pods, maxUnavailable %d, partition %d, already updated %d\n", res.Revision, res.Replicas, res.MaxUnavailable, res.Partition, res.AlreadyUpdated)
	if len(res.Conflicts) > 0 {
		fmt.Printf("left to older rollouts: %d pods, e.g. %v\n", len(res.Conflicts), res.Conflicts[:min(3, len(res.Conflicts))])
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "BATCH\tSTEP\tPOD\tNODE\tZONE\tFIRST\tWHY")
	for _, p := range res.Pods {
		b := "-"
		if p.Batch > 0 {
			b = fmt.Sprint(p.Batch)
		}
		zone := ""
		if n := s.Nodes[p.Node]; n != nil && n.Node != nil {
			zone = n.Node.TopologyLabels["topology.kubernetes.io/zone"]
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", b, p.Step, p.Pod, p.Node, zone, p.Action, p.Why)
	}
	return w.Flush()
}

// foldCluster lists what the planner needs from a namespace into s.
func foldCluster(ctx context.Context, client dynamic.Interface, ns string, s *projections.State, seq *uint64) error {
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
			return fmt.Errorf("listing %s: %w", res.Name(), err)
		}
		for i := range list.Items {
			o, err := ingest.Compact(res, &list.Items[i])
			if err != nil {
				return err
			}
			*seq++
			if err := s.Apply(journal.Record{Seq: *seq, Time: now, Kind: journal.KindObserved, Key: ingest.Key(res.Name(), o.Namespace, o.Name), Body: mustBody(&o)}); err != nil {
				return err
			}
		}
	}
	return nil
}
