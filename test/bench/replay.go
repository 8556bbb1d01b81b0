package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// replayCmd measures replay on a recorded journal (a kept rollout run's):
// the baseline is reading the same journal with every checksum and
// hash-chain link verified and nothing else (scan); then the fold alone
// (scan + decode + projections), then replay as `rollbook replay --dir`
// does it (the fold, and at each recorded plan the planner run again and
// compared). Runs are interleaved so that a noisy minute hits all alike.
func replayCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("replay")
	dir := fs.String("journal", "", "journal directory of a recorded rollout (rollout --keep: <work dir>/journal)")
	runs := fs.Int("runs", 3, "runs of each")
	only := fs.Int("phases", 0, "run only the first n phases (0: all): 2 is scan and fold")
	upto := fs.Uint64("records", 0, "read only the first n records (0: all)")
	whatIf := fs.Bool("what-if", false, "go on past divergences, as rollbook replay --what-if (a journal recorded by another planner version)")
	verify := fs.Bool("verify", false, "instead of fold and replay: Journal.Verify (rollbook journal verify) on one core, one pass, and on every core, in parts")
	divergent := 0
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := requireJournal(*dir); err != nil {
		return nil, err
	}
	jn, err := ctl.OpenExisting(*dir)
	if err != nil {
		return nil, err
	}
	defer jn.Close()
	j := limitedReader{jn, *upto}
	if j.First() != 1 {
		return nil, fmt.Errorf("%s starts at record %d: replay a journal that starts at record 1", *dir, j.First())
	}

	type phase struct {
		name string
		run  func() (records uint64, plans int, err error)
	}
	phases := []phase{
		{"scan (read, checksums, chain)", func() (uint64, int, error) {
			var n uint64
			err := j.Read(ctx, 1, func(journal.Record) error { n++; return nil })
			return n, 0, err
		}},
		{"fold (scan + decode + projections)", func() (uint64, int, error) {
			var n uint64
			s := projections.New()
			err := j.Read(ctx, 1, func(r journal.Record) error { n++; return s.Apply(r) })
			return n, 0, err
		}},
		{"replay, one pass (rollbook replay)", func() (uint64, int, error) {
			// As rollbook replay: read and decoded ahead on a second goroutine.
			o := planner.NewOnePass(projections.New(), "")
			o.KeepGoing = *whatIf
			n, stopped, err := ctl.DecodeAhead(ctx, func(ctx context.Context, fn func(journal.Record) error) error { return j.Read(ctx, 1, fn) }, o.AddDecoded)
			if err == nil && stopped {
				err = fmt.Errorf("replay diverged: %s", o.Divergences[0].String())
			}
			if err == nil {
				_, err = o.Finish()
			}
			divergent = len(o.Divergences)
			return n, o.Plans, err
		}},
		{"replay, two passes (collect intents; fold + plan, compare)", func() (uint64, int, error) {
			add, intents := planner.CollectIntents()
			if err := j.Read(ctx, 1, add); err != nil {
				return 0, 0, err
			}
			rp := planner.NewReplayer(intents(), "")
			rp.KeepGoing = *whatIf
			var n uint64
			err := j.Read(ctx, 1, func(r journal.Record) error {
				n++
				ok, err := rp.Add(r)
				if err == nil && !ok {
					err = fmt.Errorf("replay diverged: %s", rp.Divergences[0].String())
				}
				return err
			})
			return n, rp.Plans, err
		}},
	}
	if *verify {
		if *upto != 0 {
			return nil, errors.New("--verify reads the whole journal: drop --records")
		}
		cores := runtime.GOMAXPROCS(0)
		on := func(procs int) func() (uint64, int, error) {
			return func() (uint64, int, error) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				n, err := jn.Verify(ctx)
				return n, 0, err
			}
		}
		phases = []phase{phases[0],
			{"verify, one core (GOMAXPROCS 1: one pass)", on(1)},
			{fmt.Sprintf("verify, %d cores (in parts)", cores), on(cores)}}
	}
	if *only > 0 && *only < len(phases) {
		phases = phases[:*only]
	}
	fmt.Printf("\nreplay: %s, %d runs of each, interleaved\n", *dir, *runs)
	printMachine(env)
	times := make([][]time.Duration, len(phases))
	cpus := make([][]time.Duration, len(phases))
	var records uint64
	var plans int
	for run := range *runs {
		for i, p := range phases {
			start, cpu0 := time.Now(), cpuTime()
			n, pl, err := p.run()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			took := time.Since(start)
			times[i] = append(times[i], took)
			cpus[i] = append(cpus[i], cpuTime()-cpu0)
			records = n
			if pl > 0 {
				plans = pl
			}
			env.logf("run %d: %s: %d records in %s (%.0f records/s)", run+1, p.name, n, took.Round(time.Millisecond), float64(n)/took.Seconds())
		}
	}
	fmt.Printf("  %d records", records)
	if !*verify {
		fmt.Printf(", %d recorded plans compared", plans)
	}
	if *whatIf {
		fmt.Printf(", %d of them derived differently by today's planner (--what-if)", divergent)
	}
	fmt.Println()
	rows := map[string]any{}
	scan, scanCPU := median(times[0]), median(cpus[0])
	for i, p := range phases {
		med, cpu := median(times[i]), median(cpus[i])
		rate, cpuRate := float64(records)/med.Seconds(), float64(records)/cpu.Seconds()
		fmt.Printf("  %-58s median %9s (%9.0f records/s, %6.2f× scan's), CPU %9s (%9.0f records per CPU-second, %6.2f× scan's)\n",
			p.name, med.Round(time.Millisecond), rate, med.Seconds()/scan.Seconds(), cpu.Round(time.Millisecond), cpuRate, cpu.Seconds()/scanCPU.Seconds())
		rows[fmt.Sprintf("phase_%d", i)] = map[string]any{"name": p.name, "median_s": round(med.Seconds(), 3), "records_per_s": round(rate, 0),
			"cpu_s": round(cpu.Seconds(), 3), "records_per_cpu_s": round(cpuRate, 0)}
	}
	return map[string]any{"journal": *dir, "records": records, "plans": plans, "divergent_plans": divergent, "phases": rows}, nil
}

// limitedReader reads a journal's first n records (n == 0: all).
type limitedReader struct {
	j *journal.Journal
	n uint64
}

func (l limitedReader) First() uint64 { return l.j.First() }

func (l limitedReader) Read(ctx context.Context, from uint64, fn func(journal.Record) error) error {
	if l.n == 0 {
		return l.j.Read(ctx, from, fn)
	}
	return l.j.Read(ctx, from, func(r journal.Record) error {
		if r.Seq > l.n {
			return journal.ErrStop
		}
		return fn(r)
	})
}

// cpuTime is the CPU time (user and system) this process has used: on a
// shared machine it moves much less with the load than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
