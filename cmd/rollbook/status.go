package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// statusCmd prints every rollout as the journal last saw it: what
// `kubectl get ipr` shows, plus the conditions, from any journal copy.
func statusCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	src := sourceFlags(fs)
	output := fs.String("o", "", "output format: json or yaml (default: a table)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *output != "" && *output != "json" && *output != "yaml" {
		return fmt.Errorf("-o %q: use json or yaml", *output)
	}
	s := projections.New()
	base := func(b *projections.Books) error { s = b.State; return nil }
	if err := src.readFrom(ctx, base, func(r journal.Record) error { return s.Apply(r) }); err != nil {
		return err
	}
	keys := make([]string, 0, len(s.Rollouts))
	for k := range s.Rollouts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if *output != "" {
		return printStatus(os.Stdout, *output, s, keys)
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ROLLOUT\tPHASE\tUPDATED\tREADY\tUNAVAILABLE\tFAILED\tSTEP\tREVISION\tJOURNAL SEQ")
	for _, k := range keys {
		st := s.Rollouts[k].Status
		fmt.Fprintf(w, "%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%s\t%d\n", k, st.Phase, st.Updated, st.Replicas, st.UpdatedReady, st.Unavailable, st.Failed, st.CurrentStep, st.TargetRevision, st.JournalSequence)
		for _, c := range st.Conditions {
			if c.Status == "True" && c.Message != "" {
				fmt.Fprintf(w, "  %s\t%s: %s\n", c.Type, c.Reason, c.Message)
			}
		}
		if a := st.Analysis; a != nil {
			for _, c := range a.Checks {
				fmt.Fprintf(w, "  analysis\tstep %d %s %s: %s (%d measurements)\n", a.Step, c.Name, c.Phase, c.Message, c.Measurements)
			}
		}
	}
	fmt.Fprintf(w, "(%d records, %d pods tracked)\n", s.Seq, len(s.Pods))
	return w.Flush()
}

// statusItem is one rollout in `status -o json|yaml`: its name and the
// status as the journal last saw it, the fields `kubectl get ipr -o json`
// shows under .status.
type statusItem struct {
	Namespace string                    `json:"namespace"`
	Name      string                    `json:"name"`
	Status    projections.RolloutStatus `json:"status"`
}

func printStatus(w io.Writer, format string, s *projections.State, keys []string) error {
	out := struct {
		Rollouts []statusItem `json:"rollouts"`
		// JournalSequence is the last record folded.
		JournalSequence uint64 `json:"journalSequence"`
		PodsTracked     int    `json:"podsTracked"`
	}{Rollouts: []statusItem{}, JournalSequence: s.Seq, PodsTracked: len(s.Pods)}
	for _, k := range keys {
		r := s.Rollouts[k]
		out.Rollouts = append(out.Rollouts, statusItem{Namespace: r.Namespace, Name: r.Name, Status: r.Status})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}
