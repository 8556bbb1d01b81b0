package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"rollbook.dev/rollbook/ctl"
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
	// Gate seen → patch intended, split at the last record the patch's
	// plan folded (its PlanSeq): GatherWait from the gate seen to that
	// record (records the plan waited for), PlanToIntent from that
	// record's commit to the intent's (fold, quiet, plan, and the
	// intent's commit).
	GatherWait, PlanToIntent phaseStat
	// With the bench's own watch: how long after an event reached the
	// bench's watch did ingest journal it (IngestLag), and how long after
	// the controller journaled a write's success did the event of that
	// write reach the bench's watch (WatchDelay; negative when the event
	// came before the outcome was journaled).
	IngestLag, WatchDelay phaseStat
	Matched               int
}

type phaseStat struct {
	Name        string
	Median, P90 time.Duration
}

// The per-pod milestones, in order. "seen" milestones are the first
// Observed record of the pod (the watch, journaled by ingest) showing the
// write's resourceVersion; "restarted seen" is the first showing the app
// container running the new image and ready (kwok's restart).
var milestones = []string{
	"gate intended", "gate succeeded", "gate seen",
	"patch intended", "patch succeeded", "patch seen", "restarted seen",
	"ungate intended", "ungate succeeded",
}

const (
	mGateIntended = iota
	mGateSucceeded
	mGateSeen
	mPatchIntended
	mPatchSucceeded
	mPatchSeen
	mRestartedSeen
	mUngateIntended
	mUngateSucceeded
)

type podTimeline struct {
	at              [mUngateSucceeded + 1]time.Time
	gateRV, patchRV int64
	gateSeenSeq     uint64
}

// requireJournal refuses a --journal not given. The commands that read a
// kept journal open it with ctl.OpenExisting, which refuses a directory
// that holds none (journal.Open would make an empty one there).
func requireJournal(dir string) error {
	if dir == "" {
		return errors.New("--journal is required")
	}
	return nil
}

func analyzeJournal(ctx context.Context, dir string, since, until time.Time, arrivals map[string]time.Time) (loopStats, error) {
	s := loopStats{FailedByClass: map[string]int{}}
	j, err := ctl.OpenExisting(dir)
	if err != nil {
		return s, err
	}
	defer j.Close()
	pods := map[string]*podTimeline{} // "ns/name" → timeline
	times := map[uint64]time.Time{}   // record → its commit time, in the window
	var lags, delays, gather, toIntent []time.Duration
	var last time.Time
	mark := func(tl *podTimeline, m int, t time.Time) {
		if tl.at[m].IsZero() {
			tl.at[m] = t
		}
	}
	err = j.Read(ctx, 1, func(r journal.Record) error {
		if r.Time.Before(since) || r.Time.After(until) {
			return nil
		}
		s.Records++
		times[r.Seq] = r.Time
		if !r.Time.Equal(last) {
			s.Commits++
			last = r.Time
		}
		switch r.Kind {
		case journal.KindTick:
			s.Ticks++
		case journal.KindObserved:
			s.Observed++
			key, ok := strings.CutPrefix(r.Key, "pods/")
			if !ok {
				return nil
			}
			var o journal.Observed
			if err := r.Decode(&o); err != nil {
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			if t, ok := arrivals[o.ResourceVersion]; ok {
				lags = append(lags, r.Time.Sub(t))
			}
			tl := pods[key]
			if tl == nil || (tl.gateRV == 0 && tl.patchRV == 0) {
				return nil
			}
			rv, _ := strconv.ParseInt(o.ResourceVersion, 10, 64)
			if tl.gateRV != 0 && rv >= tl.gateRV && tl.at[mGateSeen].IsZero() {
				mark(tl, mGateSeen, r.Time)
				tl.gateSeenSeq = r.Seq
			}
			if tl.patchRV != 0 && rv >= tl.patchRV {
				mark(tl, mPatchSeen, r.Time)
				if o.Pod != nil {
					for _, c := range o.Pod.Containers {
						if c.Name == "app" && c.Ready && c.StatusImage == c.Image {
							mark(tl, mRestartedSeen, r.Time)
						}
					}
				}
			}
		case journal.KindActionIntended, journal.KindActionSucceeded:
			if r.Kind == journal.KindActionIntended {
				s.Intents++
			} else {
				s.Succeeded++
			}
			var f journal.ActionFact
			if err := r.Decode(&f); err != nil {
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			if f.Pod == "" {
				return nil
			}
			tl := pods[f.Pod]
			if tl == nil {
				if f.Kind != "gate" || r.Kind != journal.KindActionIntended {
					return nil // a pod whose cycle began before the window
				}
				tl = &podTimeline{}
				pods[f.Pod] = tl
			}
			rv, _ := strconv.ParseInt(f.ResultVersion, 10, 64)
			if t, ok := arrivals[f.ResultVersion]; ok && r.Kind == journal.KindActionSucceeded {
				delays = append(delays, t.Sub(r.Time))
			}
			switch {
			case f.Kind == "gate" && r.Kind == journal.KindActionIntended:
				mark(tl, mGateIntended, r.Time)
			case f.Kind == "gate":
				mark(tl, mGateSucceeded, r.Time)
				tl.gateRV = rv
			case f.Kind == "patch" && r.Kind == journal.KindActionIntended:
				if tl.at[mPatchIntended].IsZero() && tl.gateSeenSeq != 0 && f.PlanSeq >= tl.gateSeenSeq {
					if t, ok := times[f.PlanSeq]; ok {
						gather, toIntent = append(gather, t.Sub(tl.at[mGateSeen])), append(toIntent, r.Time.Sub(t))
					}
				}
				mark(tl, mPatchIntended, r.Time)
			case f.Kind == "patch":
				mark(tl, mPatchSucceeded, r.Time)
				tl.patchRV = rv
			case f.Kind == "ungate" && r.Kind == journal.KindActionIntended:
				mark(tl, mUngateIntended, r.Time)
			case f.Kind == "ungate":
				mark(tl, mUngateSucceeded, r.Time)
			}
		case journal.KindActionFailed:
			s.Failed++
			var f journal.ActionFact
			if err := r.Decode(&f); err == nil {
				s.FailedByClass[f.Kind+" "+f.Class]++
			}
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	phases := make([][]time.Duration, len(milestones)-1)
	var cycles []time.Duration
	for _, tl := range pods {
		complete := true
		for _, t := range tl.at {
			if t.IsZero() {
				complete = false
			}
		}
		if !complete {
			continue
		}
		for i := range phases {
			phases[i] = append(phases[i], tl.at[i+1].Sub(tl.at[i]))
		}
		cycles = append(cycles, tl.at[len(tl.at)-1].Sub(tl.at[0]))
	}
	s.Pods = len(cycles)
	for i := range phases {
		m, p := quantiles(phases[i])
		s.Phases = append(s.Phases, phaseStat{Name: milestones[i] + " → " + milestones[i+1], Median: m, P90: p})
	}
	s.Matched = len(lags)
	s.IngestLag.Name = "event at the bench's watch → journaled by ingest"
	s.IngestLag.Median, s.IngestLag.P90 = quantiles(lags)
	s.WatchDelay.Name = "write's success journaled → its event at the bench's watch"
	s.WatchDelay.Median, s.WatchDelay.P90 = quantiles(delays)
	s.GatherWait.Name = "gate seen → the last record its patch's plan folded"
	s.GatherWait.Median, s.GatherWait.P90 = quantiles(gather)
	s.PlanToIntent.Name = "that record's commit → the patch intent's commit"
	s.PlanToIntent.Median, s.PlanToIntent.P90 = quantiles(toIntent)
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
