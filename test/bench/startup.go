package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

// startupCmd measures what a controller's start-up reads from its journal
// (DESIGN: checkpoints): open the journal, load the latest checkpoint, fold
// the records after it — the path cmd/rollbook's controller takes before
// it resumes its watches — against the same journal folded from record 1,
// in the same run, for journals of growing age. Then it simulates a month
// of a fleet's churn with a checkpoint every --checkpoint-every records
// and the shipped retention defaults, on a simulated clock, and reports
// the disk the journal takes at the end against what was written.
func startupCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("startup")
	pods := fs.Int("pods", 10_000, "pods in the fleet")
	sizes := fs.String("records", "1000000,10000000", "comma-separated journal lengths (records of history)")
	every := fs.Uint64("checkpoint-every", 50_000, "records between checkpoints (rollbook run's default)")
	perDay := fs.Int("records-per-day", 600_000, "the month's churn: records a day (~300 MB a day of journal)")
	days := fs.Int("days", 30, "simulated days")
	retainAge := fs.Duration("retain-age", 14*24*time.Hour, "retention by age (rollbook run's default)")
	retainBytes := fs.Uint64("retain-bytes", 3<<30, "retention by size (rollbook run's default)")
	keep := fs.Bool("keep", false, "keep the work directory")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	dir, cleanup, err := env.workDir("startup", *keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	fmt.Printf("\nstartup: %d pods; start-up from the latest checkpoint (at most %d records behind, half that on average) vs from record 1\n", *pods, *every)
	printMachine(env)
	var rows []map[string]any
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < *pods {
			return nil, fmt.Errorf("--records: %q (at least --pods)", f)
		}
		jdir := filepath.Join(dir, fmt.Sprintf("journal-%d", n))
		env.logf("writing %d records", n)
		// The checkpoint sits half an interval before the end: what an
		// average restart finds.
		at := uint64(n) - *every/2
		ckptBytes, err := writeHistory(ctx, jdir, *pods, n, at, nil, 0, journal.Retention{})
		if err != nil {
			return nil, err
		}
		env.logf("timing start-up")
		full, fullRecs, err := timedStart(ctx, jdir, false)
		if err != nil {
			return nil, err
		}
		fast, fastRecs, err := timedStart(ctx, jdir, true)
		if err != nil {
			return nil, err
		}
		disk, _ := dirBytes(jdir)
		fmt.Printf("  %9d records (%5.0f MiB): from record 1 %7.2f s (%d records); from the checkpoint %6.3f s (%d records, checkpoint %.1f MiB) — %.0fx faster\n",
			n, mib(float64(disk)), full.Seconds(), fullRecs, fast.Seconds(), fastRecs, mib(float64(ckptBytes)), full.Seconds()/fast.Seconds())
		rows = append(rows, map[string]any{"records": n, "full_s": round(full.Seconds(), 3), "checkpoint_s": round(fast.Seconds(), 4),
			"checkpoint_mib": mib(float64(ckptBytes)), "journal_mib": mib(float64(disk)), "speedup": round(full.Seconds()/fast.Seconds(), 1)})
		os.RemoveAll(jdir)
	}

	total := *perDay * *days
	env.logf("simulating %d days, %d records", *days, total)
	mdir := filepath.Join(dir, "month")
	r := journal.Retention{MaxAge: *retainAge, MaxBytes: *retainBytes}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	step := 24 * time.Hour / time.Duration(*perDay)
	if _, err := writeHistory(ctx, mdir, *pods, total, 0, func(i int) time.Time { return start.Add(time.Duration(i) * step) }, *every, r); err != nil {
		return nil, err
	}
	disk, err := dirBytes(mdir)
	if err != nil {
		return nil, err
	}
	j, err := journal.Open(mdir, journal.Options{Logger: quiet})
	if err != nil {
		return nil, err
	}
	first := j.First()
	infos, _ := j.Checkpoints()
	logBytes, _ := j.LogBytes()
	j.Close()
	// Without retention the log would hold every record at the same size
	// each.
	written := float64(logBytes) * float64(total) / float64(uint64(total)-first+1)
	fmt.Printf("  a month at %d records a day, retention %s / %s: journal directory %.0f MiB holding records %d..%d (%.1f days), %d checkpoints; without retention ~%.0f MiB\n",
		*perDay, *retainAge, humanBytes(*retainBytes), mib(float64(disk)), first, total, float64(uint64(total)-first+1)/float64(*perDay), len(infos), mib(written))
	return map[string]any{"pods": *pods, "startup": rows, "month_mib": mib(float64(disk)), "month_days_kept": round(float64(uint64(total)-first+1)/float64(*perDay), 1),
		"month_checkpoints": len(infos), "month_unretained_mib": mib(written)}, nil
}

// writeHistory writes n records of a fleet's life into a new journal: the
// pods' first observations, then churn (a pod re-observed, ticks, action
// intents and outcomes), folding them as the controller does. With at > 0
// it saves one checkpoint at record at; with every > 0, one every that
// many records followed by Retain on the simulated clock now(i).
func writeHistory(ctx context.Context, dir string, pods, n int, at uint64, now func(int) time.Time, every uint64, r journal.Retention) (int, error) {
	i := 0
	opts := journal.Options{NoSync: true, Logger: quiet}
	if now != nil {
		opts.Now = func() time.Time { return now(i) }
	}
	j, err := journal.Open(dir, opts)
	if err != nil {
		return 0, err
	}
	defer j.Close()
	fleet, err := fleetPods(pods)
	if err != nil {
		return 0, err
	}
	books := projections.NewBooks()
	rng := rand.New(rand.NewPCG(1, 2))
	rv := make([]int, pods)
	ckptBytes := 0
	batch := make([]journal.Entry, 0, 1024)
	flush := func() error {
		recs, err := j.Append(ctx, nil, batch...)
		if err != nil {
			return err
		}
		batch = batch[:0]
		for _, rec := range recs {
			if err := books.Apply(rec); err != nil {
				return err
			}
			seq := rec.Seq
			if seq != at && (every == 0 || seq%every != 0) {
				continue
			}
			data, err := journal.EncodeCheckpoint(books)
			if err != nil {
				return err
			}
			ckptBytes = len(data)
			if err := j.SaveCheckpoint(seq, data); err != nil {
				return err
			}
			if every > 0 {
				if err := j.Retain(ctx, r, seq+1, now(i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i = 0; i < n; i++ {
		var e journal.Entry
		switch k := rng.IntN(100); {
		case i < pods:
			e = podEntry(fleet[i], i, 1)
		case k < 90:
			p := rng.IntN(pods)
			rv[p]++
			e = podEntry(fleet[p], p, rv[p]+1)
		case k < 95:
			e = journal.Entry{Kind: journal.KindTick, Key: "tick", Body: mustEncode(journal.TickFact{Reason: "plan"})}
		default:
			p := rng.IntN(pods)
			kind := journal.KindActionIntended
			if k%2 == 1 {
				kind = journal.KindActionSucceeded
			}
			e = journal.Entry{Kind: kind, Key: "action", Body: mustEncode(journal.ActionFact{
				Key: "gate/" + benchNS + "/" + barePodName(p), Kind: "gate", Pod: benchNS + "/" + barePodName(p), UID: fleet[p].UID, PlanSeq: uint64(i)})}
		}
		batch = append(batch, e)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if len(batch) > 0 {
		if err := flush(); err != nil {
			return 0, err
		}
	}
	return ckptBytes, nil
}

// fleetPods are n pods as ingest journals them: memory's rolled fleet
// (watchedPodAt: two containers with requests, limits and probes, six
// conditions, and the state annotation the last rollout's patch wrote, as
// a managed fleet's pods carry), compacted by ingest itself. A record of
// one is ~1.4 KB encoded.
func fleetPods(n int) ([]journal.Observed, error) {
	out := make([]journal.Observed, n)
	for i := range out {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(watchedPodAt(i, 0, true)); err != nil {
			return nil, err
		}
		o, err := ingest.Compact(ingest.Pods, u)
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	return out, nil
}

// podEntry is pod o observed again, at its rv-th version.
func podEntry(o journal.Observed, p, rv int) journal.Entry {
	o.ResourceVersion = strconv.Itoa(1000 + rv*7919 + p)
	return journal.Entry{Kind: journal.KindObserved, Key: ingest.Key(o.Resource, o.Namespace, o.Name), Body: mustEncode(&o)}
}

func mustEncode(v any) []byte {
	b, err := journal.EncodeBody(v)
	if err != nil {
		panic(err)
	}
	return b
}

// timedStart opens the journal and folds it as a starting controller
// does, from its latest checkpoint or (useCheckpoint false) from record 1.
func timedStart(ctx context.Context, dir string, useCheckpoint bool) (time.Duration, uint64, error) {
	t0 := time.Now()
	j, err := journal.Open(dir, journal.Options{Logger: quiet})
	if err != nil {
		return 0, 0, err
	}
	defer j.Close()
	books := projections.NewBooks()
	if useCheckpoint {
		c, ok, err := j.LatestCheckpoint(0)
		if err != nil || !ok {
			return 0, 0, fmt.Errorf("no checkpoint: %v", err)
		}
		if err := journal.DecodeCheckpoint(c.Data, books); err != nil {
			return 0, 0, err
		}
	}
	from := books.State.Seq
	if err := j.Read(ctx, from+1, books.Apply); err != nil {
		return 0, 0, err
	}
	return time.Since(t0), books.State.Seq - from, nil
}

func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

func humanBytes(b uint64) string {
	if b >= 1<<30 {
		return fmt.Sprintf("%.0f GiB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}
