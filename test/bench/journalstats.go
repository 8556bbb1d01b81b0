package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"rollbook.dev/rollbook/journal"
)

// loopStats is what the controller's journal says about its loop during a
// window: how records were committed, and where a pod's time went between
// its gate intent and its ungate's success.
type loopStats struct {
	Records, Commits, Ticks, Observed int
	Intents, Succeeded, Failed        int
	FailedByClass                     map[string]int
	// Per-pod phases (median / p90 over the pods that completed a cycle).
	Phases []phaseStat
	Cycle  phaseStat
	Pods   int
}

type phaseStat struct {
	Name        string
	Median, P90 time.Duration
}

// The per-pod milestones, in order.
var milestones = []string{"gate intended", "gate succeeded", "patch intended", "patch succeeded", "ungate intended", "ungate succeeded"}

func analyzeJournal(ctx context.Context, dir string, since, until time.Time) (loopStats, error) {
	s := loopStats{FailedByClass: map[string]int{}}
	j, err := journal.Open(dir, journal.Options{Logger: quiet})
	if err != nil {
		return s, err
	}
	defer j.Close()
	at := map[string][]time.Time{} // pod → milestone times (first of each)
	var last time.Time
	err = j.Read(ctx, 1, func(r journal.Record) error {
		if r.Time.Before(since) || r.Time.After(until) {
			return nil
		}
		s.Records++
		if !r.Time.Equal(last) {
			s.Commits++
			last = r.Time
		}
		var step string
		switch r.Kind {
		case journal.KindTick:
			s.Ticks++
			return nil
		case journal.KindObserved:
			s.Observed++
			return nil
		case journal.KindActionIntended:
			s.Intents++
			step = "intended"
		case journal.KindActionSucceeded:
			s.Succeeded++
			step = "succeeded"
		case journal.KindActionFailed:
			s.Failed++
			var f journal.ActionFact
			if err := r.Decode(&f); err == nil {
				s.FailedByClass[f.Kind+" "+f.Class]++
			}
			return nil
		default:
			return nil
		}
		var f journal.ActionFact
		if err := r.Decode(&f); err != nil {
			return fmt.Errorf("record %d: %w", r.Seq, err)
		}
		if f.Pod == "" {
			return nil
		}
		name := f.Kind + " " + step
		idx := -1
		for i, m := range milestones {
			if m == name {
				idx = i
			}
		}
		if idx < 0 {
			return nil
		}
		ts := at[f.Pod]
		if ts == nil {
			if idx != 0 {
				return nil // a pod whose cycle began before the window
			}
			ts = make([]time.Time, len(milestones))
			at[f.Pod] = ts
		}
		if ts[idx].IsZero() {
			ts[idx] = r.Time
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	phases := make([][]time.Duration, len(milestones)-1)
	var cycles []time.Duration
	for _, ts := range at {
		complete := true
		for _, t := range ts {
			if t.IsZero() {
				complete = false
			}
		}
		if !complete {
			continue
		}
		for i := range phases {
			phases[i] = append(phases[i], ts[i+1].Sub(ts[i]))
		}
		cycles = append(cycles, ts[len(ts)-1].Sub(ts[0]))
	}
	s.Pods = len(cycles)
	for i := range phases {
		m, p := quantiles(phases[i])
		s.Phases = append(s.Phases, phaseStat{Name: milestones[i] + " → " + milestones[i+1], Median: m, P90: p})
	}
	s.Cycle.Name = "gate intended → ungate succeeded"
	s.Cycle.Median, s.Cycle.P90 = quantiles(cycles)
	return s, nil
}

func quantiles(ds []time.Duration) (median, p90 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[len(ds)*9/10]
}
