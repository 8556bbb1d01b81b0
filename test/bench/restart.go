package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
)

type syncRun struct {
	Open     time.Duration // journal.Open
	Sync     time.Duration // Run start → WaitSynced
	Relists  int64
	Records  int64
	Tracked  int
	Fallback int64
	Commits  int // journal batches (one fsync each) the run's records took
}

// timedSync opens the journal in dir, runs a pods ingester for ns until
// synced, and stops it.
func timedSync(ctx context.Context, cfg *rest.Config, dir, ns string, mode ingest.ListMode) (syncRun, error) {
	var r syncRun
	t0 := time.Now()
	j, err := journal.Open(dir, journal.Options{Logger: quiet})
	if err != nil {
		return r, err
	}
	defer j.Close()
	r.Open = time.Since(t0)
	seq0, _ := j.Last()
	client, err := ingest.NewClient(cfg)
	if err != nil {
		return r, err
	}
	in, err := ingest.New(ingest.Options{
		Client: client, Journal: j, Resources: []ingest.Resource{ingest.Pods},
		Namespaces: []string{ns}, ListMode: mode, Logger: quiet,
	})
	if err != nil {
		return r, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- in.Run(rctx) }()
	err = in.WaitSynced(ctx)
	r.Sync = time.Since(start)
	cancel()
	if rerr := <-done; rerr != nil && err == nil && rctx.Err() == nil {
		err = rerr
	}
	r.Relists, r.Records, r.Fallback = in.Stats.Relists.Load(), in.Stats.Records.Load(), in.Stats.StreamFallback.Load()
	r.Tracked = int(in.Held()[ingest.Pods.Name()])
	if err != nil {
		return r, err
	}
	// Records of one commit share its timestamp: count the commits.
	var last time.Time
	err = j.Read(ctx, seq0+1, func(rec journal.Record) error {
		if !rec.Time.Equal(last) {
			r.Commits++
			last = rec.Time
		}
		return nil
	})
	return r, err
}

func restartCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("restart")
	pods := fs.Int("pods", 10000, "bare pods to create")
	parallel := fs.Int("parallel", 16, "parallel pod creators")
	status := fs.Bool("status", true, "also write each pod's running status")
	reps := fs.Int("reps", 3, "repetitions of each measurement")
	paginated := fs.Bool("paginated", true, "also time a paginated relist (for servers without WatchList)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c, err := podCluster(ctx, env, *pods, *parallel, *status)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	cfg := c.Config()
	root, err := os.MkdirTemp("", "rollbook-bench-restart-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(root)

	// The journal every resume starts from: one synced ingest.
	synced := filepath.Join(root, "synced")
	first, err := timedSync(ctx, cfg, synced, benchNS, ingest.ListStreaming)
	if err != nil {
		return nil, fmt.Errorf("first sync: %w", err)
	}
	if first.Tracked != *pods {
		return nil, fmt.Errorf("first sync tracked %d pods, want %d", first.Tracked, *pods)
	}
	env.logf("journal synced (%d records, %s); timing %d repetitions", first.Records, first.Sync.Round(time.Millisecond), *reps)

	var resume, relist, paged, opens []time.Duration
	var relistCommits, pagedCommits []int
	var relistRecords int64
	for i := range *reps {
		// Interleaved, so a noisy minute hits both alike.
		r, err := timedSync(ctx, cfg, synced, benchNS, ingest.ListStreaming)
		if err != nil {
			return nil, fmt.Errorf("resume %d: %w", i+1, err)
		}
		if r.Relists != 0 {
			return nil, fmt.Errorf("resume %d relisted (%d relists): the journaled cursor was not used", i+1, r.Relists)
		}
		if r.Tracked != *pods {
			return nil, fmt.Errorf("resume %d tracked %d pods, want %d", i+1, r.Tracked, *pods)
		}
		resume, opens = append(resume, r.Sync), append(opens, r.Open)

		l, err := timedSync(ctx, cfg, filepath.Join(root, fmt.Sprintf("fresh-%d", i)), benchNS, ingest.ListStreaming)
		if err != nil {
			return nil, fmt.Errorf("relist %d: %w", i+1, err)
		}
		if l.Relists != 1 || l.Fallback != 0 || l.Tracked != *pods {
			return nil, fmt.Errorf("relist %d: %d relists, %d fallbacks, %d tracked", i+1, l.Relists, l.Fallback, l.Tracked)
		}
		relist = append(relist, l.Sync)
		relistCommits = append(relistCommits, l.Commits)
		relistRecords = l.Records

		if *paginated {
			p, err := timedSync(ctx, cfg, filepath.Join(root, fmt.Sprintf("paged-%d", i)), benchNS, ingest.ListPaginated)
			if err != nil {
				return nil, fmt.Errorf("paginated relist %d: %w", i+1, err)
			}
			if p.Relists != 1 || p.Tracked != *pods {
				return nil, fmt.Errorf("paginated relist %d: %d relists, %d tracked", i+1, p.Relists, p.Tracked)
			}
			paged = append(paged, p.Sync)
			pagedCommits = append(pagedCommits, p.Commits)
		}
		env.logf("  rep %d: resume %s, streaming relist %s (%d commits), paginated %v", i+1, r.Sync.Round(time.Millisecond), l.Sync.Round(time.Millisecond), l.Commits, paged)
	}
	mr, ml := median(resume), median(relist)
	ratio := round(ml.Seconds()/mr.Seconds(), 1)
	fmt.Printf("\nrestart: %d pods, Run start → WaitSynced, median of %d (each rep interleaved)\n", *pods, *reps)
	printMachine(env)
	fmt.Printf("  resume from journaled cursor   %8s   (relists 0; runs %v s; journal.Open before it %s)\n", mr.Round(time.Millisecond), seconds(resume), median(opens).Round(time.Millisecond))
	fmt.Printf("  fresh journal, streaming list  %8s   (runs %v s; %d records in %v journal commits)\n", ml.Round(time.Millisecond), seconds(relist), relistRecords, relistCommits)
	out := map[string]any{
		"pods": *pods, "reps": *reps,
		"resume_median_s": round(mr.Seconds(), 3), "resume_s": seconds(resume), "journal_open_median_s": round(median(opens).Seconds(), 3),
		"relist_median_s": round(ml.Seconds(), 3), "relist_s": seconds(relist),
		"ratio_relist_over_resume": ratio,
		"relist_records":           relistRecords, "relist_commits": relistCommits,
	}
	if *paginated {
		mp := median(paged)
		fmt.Printf("  fresh journal, paginated list  %8s   (runs %v s; %v journal commits)\n", mp.Round(time.Millisecond), seconds(paged), pagedCommits)
		out["paginated_commits"] = pagedCommits
		out["paginated_median_s"], out["paginated_s"] = round(mp.Seconds(), 3), seconds(paged)
		out["ratio_paginated_over_resume"] = round(mp.Seconds()/mr.Seconds(), 1)
	}
	fmt.Printf("  ratio streaming relist ÷ resume: %.1f×\n", ratio)
	return out, nil
}
