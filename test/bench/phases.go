package main

import (
	"context"
	"fmt"
	"time"
)

// printPhases prints a pod's cycle phase by phase, and where the first of
// Rollbook's own steps (gate seen → patch intended) goes.
func printPhases(loop loopStats) {
	for _, ph := range loop.Phases {
		fmt.Printf("    %-36s median %7s   p90 %7s\n", ph.Name, ph.Median.Round(time.Millisecond), ph.P90.Round(time.Millisecond))
	}
	fmt.Println("  gate seen → patch intended, split at the last record the plan folded (its PlanSeq):")
	for _, ph := range []phaseStat{loop.GatherWait, loop.PlanToIntent} {
		fmt.Printf("    %-52s median %7s   p90 %7s\n", ph.Name, ph.Median.Round(100*time.Microsecond), ph.P90.Round(100*time.Microsecond))
	}
}

// phasesCmd reads a kept run's journal as rollout does at its end: the
// per-pod phases of every cycle in it, and the split of Rollbook's first
// own step.
func phasesCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("phases")
	dir := fs.String("journal", "", "journal directory of a kept rollout run (required)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireJournal(*dir); err != nil {
		return nil, err
	}
	loop, err := analyzeJournal(ctx, *dir, time.Time{}, time.Unix(1<<40, 0), nil)
	if err != nil {
		return nil, err
	}
	fmt.Printf("\nphases: %s, %d records in %d commits, %d pods with a whole cycle\n", *dir, loop.Records, loop.Commits, loop.Pods)
	printPhases(loop)
	return map[string]any{
		"pods": loop.Pods, "phases": phaseMap(loop.Phases),
		"gather_wait":    []float64{round(loop.GatherWait.Median.Seconds(), 4), round(loop.GatherWait.P90.Seconds(), 4)},
		"plan_to_intent": []float64{round(loop.PlanToIntent.Median.Seconds(), 4), round(loop.PlanToIntent.P90.Seconds(), 4)},
	}, nil
}
