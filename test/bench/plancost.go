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
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// planCostCmd measures the controller loop's pure core on a real state:
// the state a rollout bench left in its journal (rollout --keep) just
// before the rollout's first gate, folded once per copy into namespaces
// bench-0, bench-1, ... (so 10 copies of a 1,000-pod run are the state of
// a 10,000-pod run with 10 StatefulSets), then planner.Plan on it, timed.
// The controller plans after every burst of journal records, so a plan's
// cost times the plans per second is CPU the loop spends, and a plan's
// latency is added to every pod's cycle.
func planCostCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("plan-cost")
	dir := fs.String("journal", "", "journal directory of a kept rollout run (required)")
	copiesList := fs.String("copies", "1,2,5,10", "comma-separated numbers of copies of the namespace")
	reps := fs.Int("reps", 20, "plans timed per size")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireJournal(*dir); err != nil {
		return nil, err
	}
	recs, err := stateRecords(ctx, *dir)
	if err != nil {
		return nil, err
	}
	fmt.Printf("\nplan-cost: state of %s before its first rollout gate (%d records), folded per copy; planner.Plan timed %d times\n", *dir, len(recs), *reps)
	printMachine(env)
	var rows []map[string]any
	var base float64
	for _, f := range strings.Split(*copiesList, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k <= 0 {
			return nil, fmt.Errorf("--copies: %q", f)
		}
		copied, err := copyRecords(recs, k)
		if err != nil {
			return nil, err
		}
		s := projections.New()
		foldStart := time.Now()
		for _, r := range copied {
			if err := s.Apply(r); err != nil {
				return nil, err
			}
		}
		fold := time.Since(foldStart)
		n := len(copied)
		var res planner.Result
		var times []time.Duration
		for range *reps {
			t := time.Now()
			res = planner.Plan(s)
			times = append(times, time.Since(t))
		}
		med := median(times)
		perPod := float64(med.Nanoseconds()) / float64(len(s.Pods))
		if base == 0 {
			base = perPod
		}
		incMed, err := incrementalCost(s, *reps)
		if err != nil {
			return nil, err
		}
		fmt.Printf("  %2d× : %6d pods, %3d rollouts: Plan median %8s (%5.2f µs/pod, %.1f× the 1-copy µs/pod), %4d actions; Incremental after one pod changed %8s (%.0f× less); fold %6.0f records/s\n",
			k, len(s.Pods), len(s.Rollouts), med.Round(10*time.Microsecond), perPod/1000, perPod/base, len(res.Actions), incMed.Round(10*time.Microsecond),
			float64(med)/float64(incMed), float64(n)/fold.Seconds())
		rows = append(rows, map[string]any{
			"copies": k, "pods": len(s.Pods), "rollouts": len(s.Rollouts), "plan_median_ms": round(float64(med.Microseconds())/1000, 2),
			"us_per_pod": round(perPod/1000, 2), "actions": len(res.Actions), "fold_records_per_s": round(float64(n)/fold.Seconds(), 0),
			"incremental_median_ms": round(float64(incMed.Microseconds())/1000, 3),
		})
	}
	return map[string]any{"journal": *dir, "sizes": rows}, nil
}

// incrementalCost times planner.Incremental as the controller runs it: a
// first plan of everything, its actions journaled as intents (in flight,
// as the controller leaves them while the writes run), a plan that takes
// them in, then reps plans each after one pod's watch event (a pod of a
// different rollout each time). It works on s, which it changes.
func incrementalCost(s *projections.State, reps int) (time.Duration, error) {
	s.Track()
	inc := planner.NewIncremental()
	at := time.Unix(0, s.Now).UTC()
	seq := s.Seq
	apply := func(kind journal.Kind, key string, v any) error {
		body, err := journal.EncodeBody(v)
		if err != nil {
			return err
		}
		seq++
		return s.Apply(journal.Record{Seq: seq, Time: at, Kind: kind, Key: key, Body: body})
	}
	for _, a := range inc.Plan(s, nil).Actions {
		f := journal.ActionFact{Key: a.Key(), Kind: string(a.Kind), Rollout: a.Rollout, Pod: a.Pod, UID: a.UID, Revision: a.Revision, PlanSeq: s.Seq}
		if err := apply(journal.KindActionIntended, a.Key(), f); err != nil {
			return 0, err
		}
	}
	inc.Plan(s, s.TakeTouched())
	keys := make([]string, 0, len(s.Pods))
	for k := range s.Pods {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var times []time.Duration
	for i := range reps {
		pod := s.Pods[keys[(i*7919)%len(keys)]]
		o := pod.Observed()
		if err := apply(journal.KindObserved, "pods/"+pod.Key(), &o); err != nil {
			return 0, err
		}
		t := time.Now()
		inc.Plan(s, s.TakeTouched())
		times = append(times, time.Since(t))
	}
	if inc.Full != 1 {
		return 0, fmt.Errorf("plan-cost: %d of the incremental planner's plans were full, want only the first", inc.Full)
	}
	return median(times), nil
}

// stateRecords returns the Observed, Vanished and Tick records of a
// journal up to its first gate intent.
func stateRecords(ctx context.Context, dir string) ([]journal.Record, error) {
	j, err := ctl.OpenExisting(dir)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	var out []journal.Record
	stop := errors.New("stop")
	err = j.Read(ctx, 1, func(r journal.Record) error {
		switch r.Kind {
		case journal.KindObserved, journal.KindVanished, journal.KindTick:
			out = append(out, r)
		case journal.KindActionIntended:
			var f journal.ActionFact
			if err := r.Decode(&f); err != nil {
				return err
			}
			if f.Kind == "gate" {
				return stop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return nil, err
	}
	return out, nil
}

// copyRecords repeats recs k times, namespaced objects of benchNS moved
// to bench-<i>, cluster-scoped ones and ticks kept once, renumbered.
func copyRecords(recs []journal.Record, k int) ([]journal.Record, error) {
	var out []journal.Record
	for i := range k {
		ns := fmt.Sprintf("%s-%d", benchNS, i)
		for _, r := range recs {
			switch r.Kind {
			case journal.KindObserved:
				var o journal.Observed
				if err := r.Decode(&o); err != nil {
					return nil, err
				}
				if o.Namespace == "" && i > 0 || o.Namespace != "" && o.Namespace != benchNS {
					continue
				}
				if o.Namespace != "" {
					o.Namespace = ns
					r.Key = strings.Replace(r.Key, "/"+benchNS+"/", "/"+ns+"/", 1)
				}
				body, err := journal.EncodeBody(&o)
				if err != nil {
					return nil, err
				}
				r.Body = body
			case journal.KindVanished:
				var v journal.Vanished
				if err := r.Decode(&v); err != nil {
					return nil, err
				}
				if v.Namespace == "" && i > 0 || v.Namespace != "" && v.Namespace != benchNS {
					continue
				}
				if v.Namespace != "" {
					v.Namespace = ns
					r.Key = strings.Replace(r.Key, "/"+benchNS+"/", "/"+ns+"/", 1)
				}
				body, err := journal.EncodeBody(&v)
				if err != nil {
					return nil, err
				}
				r.Body = body
			case journal.KindTick:
				if i > 0 {
					continue
				}
			}
			r.Seq = uint64(len(out) + 1)
			out = append(out, r)
		}
	}
	return out, nil
}
