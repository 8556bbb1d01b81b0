package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// statusCmd prints every rollout as the journal last saw it: what
// `kubectl get ipr` shows, plus the conditions, from any journal copy.
func statusCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	src := sourceFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
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
	}
	fmt.Fprintf(w, "(%d records, %d pods tracked)\n", s.Seq, len(s.Pods))
	return w.Flush()
}
