package main

import (
	"context"
	"fmt"
	"runtime"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// heldCmd folds a kept rollout journal as the controller's fold does and
// reports the heap it holds per pod: at the rollout's first gate intent
// (the fleet as created, Ready, never rolled), at the journal's end (every
// pod updated in place, each carrying the state annotation its patch
// wrote), and then with what the planner keeps after planning once (its
// claims, each rollout's last plan). Each is over the heap of the same
// process with the journal open and nothing folded, measured first: what
// the controller holds of a real fleet before and after a rollout, where
// memory holds a fleet made in process.
func heldCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("held")
	dir := fs.String("journal", "", "journal directory of a kept rollout run (required)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireJournal(*dir); err != nil {
		return nil, err
	}
	j, err := ctl.OpenExisting(*dir)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	base := snapshot().Live
	books := projections.NewBooks()
	type point struct {
		seq        uint64
		pods, live uint64
	}
	var before, after point
	err = j.Read(ctx, 1, func(r journal.Record) error {
		if before.seq == 0 && r.Kind == journal.KindActionIntended {
			var f journal.ActionFact
			if err := r.Decode(&f); err != nil {
				return err
			}
			if f.Kind == "gate" {
				before = point{seq: r.Seq, pods: uint64(len(books.State.Pods)), live: snapshot().Live}
			}
		}
		return books.Apply(r)
	})
	if err != nil {
		return nil, err
	}
	after = point{seq: books.State.Seq, pods: uint64(len(books.State.Pods)), live: snapshot().Live}
	// What the planner keeps besides (each rollout's last plan, the
	// claims), planned once as a controller that started here would.
	inc := planner.NewIncremental()
	inc.Plan(books.State, nil)
	planned := point{seq: after.seq, pods: after.pods, live: snapshot().Live}
	runtime.KeepAlive(inc)
	runtime.KeepAlive(books)
	if before.seq == 0 || before.pods == 0 || after.pods == 0 {
		return nil, fmt.Errorf("%s holds no rollout of a fleet (first gate intent at record %d, %d pods then, %d at the end)", *dir, before.seq, before.pods, after.pods)
	}
	per := func(p point) float64 { return float64(p.live-base) / float64(p.pods) }
	withState := 0
	for _, p := range books.State.Pods {
		if p.State != nil {
			withState++
		}
	}
	fmt.Printf("\nheld: the fold of %s, heap live over the journal opened and nothing folded (%.1f MiB)\n", *dir, mib(float64(base)))
	fmt.Printf("  at the first gate intent (record %d): %d pods, %.1f MiB, %.0f B/pod\n", before.seq, before.pods, mib(float64(before.live-base)), per(before))
	fmt.Printf("  at the end (record %d):             %d pods (%d with a state annotation), %.1f MiB, %.0f B/pod\n", after.seq, after.pods, withState, mib(float64(after.live-base)), per(after))
	fmt.Printf("  the rollout left %+.0f B/pod\n", per(after)-per(before))
	fmt.Printf("  at the end, with the planner's caches after one plan: %.1f MiB, %.0f B/pod\n", mib(float64(planned.live-base)), per(planned))
	return map[string]any{"pods_before": before.pods, "pods_after": after.pods, "with_state": withState,
		"heap_b_per_pod_before": round(per(before), 0), "heap_b_per_pod_after": round(per(after), 0),
		"heap_b_per_pod_planned": round(per(planned), 0)}, nil
}
