package ctl

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// FoldState folds src into the state as the journal last saw it, from
// its newest checkpoint (Source.ReadLatest).
func FoldState(ctx context.Context, src Source) (*projections.State, error) {
	s := projections.New()
	base := func(b *projections.Books) error { s = b.State; return nil }
	if err := src.ReadLatest(ctx, base, func(r journal.Record) error { return s.Apply(r) }); err != nil {
		return nil, err
	}
	return s, nil
}

// Status prints every rollout of s as the journal last saw it: a table
// with the conditions that say something, or (format json|yaml) the
// statuses for scripts.
func Status(w io.Writer, format string, s *projections.State) error {
	keys := slices.Sorted(maps.Keys(s.Rollouts))
	if format != "" {
		return PrintStatus(w, format, s, keys)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLLOUT\tPHASE\tUPDATED\tREADY\tUNAVAILABLE\tFAILED\tSTEP\tREVISION\tJOURNAL SEQ")
	for _, k := range keys {
		st := s.Rollouts[k].Status
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%s\t%d\n", k, st.Phase, st.Updated, st.Replicas, st.UpdatedReady, st.Unavailable, st.Failed, st.CurrentStep, st.TargetRevision, st.JournalSequence)
		for _, c := range st.Conditions {
			if c.Status == "True" && c.Message != "" && c.Type != "Ready" {
				fmt.Fprintf(tw, "  %s\t%s: %s\n", c.Type, c.Reason, c.Message)
			}
		}
		if a := st.Analysis; a != nil {
			for _, c := range a.Checks {
				fmt.Fprintf(tw, "  analysis\tstep %d %s %s: %s (%d measurements)\n", a.Step, c.Name, c.Phase, c.Message, c.Measurements)
			}
		}
	}
	fmt.Fprintf(tw, "(%d records, %d pods tracked)\n", s.Seq, len(s.Pods))
	return tw.Flush()
}

// statusItem is one rollout in `status -o json|yaml`: its name and the
// status as the journal last saw it, the fields `kubectl get ipr -o json`
// shows under .status.
type statusItem struct {
	Namespace string                    `json:"namespace"`
	Name      string                    `json:"name"`
	Status    projections.RolloutStatus `json:"status"`
}

// PrintStatus writes the statuses of the rollouts keys names as JSON or
// YAML.
func PrintStatus(w io.Writer, format string, s *projections.State, keys []string) error {
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
	return Print(w, format, out)
}
