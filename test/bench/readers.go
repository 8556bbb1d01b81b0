package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/tracing"
)

// readersCmd measures what the journal's readers of the present read on a
// journal directory, each against the same reader from record 1 (what
// they all did before) on the same journal, in the same run:
//   - status and a dry run's plan (ctl.FoldState): the state from the
//     newest checkpoint (Source.ReadLatest) vs folded from record 1;
//   - history, trace and report of --rollout (ctl.Spans): from the record
//     that first showed the rollout's current object (Source.ReadRolloutRecords)
//     vs every record;
//   - what the journal API sends for each (ctl.WriteJournal's bytes), and
//     what the controller allocates to send the state's checkpoint, in
//     each form, against holding it whole as it did before (serveWhole).
//
// Without --journal it writes a synthetic fleet's (--pods, writeHistory).
func readersCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("readers")
	dir := fs.String("journal", "", "a journal directory, not in use (a copy, or a stopped controller's)")
	rollout := fs.String("rollout", "", "a rollout of the journal, namespace/name, for history (none: status only)")
	pods := fs.Int("pods", 10_000, "without --journal: the synthetic fleet's pods")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *dir == "" {
		work, cleanup, err := env.workDir("readers", false)
		if err != nil {
			return nil, err
		}
		defer cleanup()
		*dir = filepath.Join(work, "journal")
		// The fleet's creation, then updates: the newest checkpoint
		// (every 50,000 records, rollbook run's default) holds all of it,
		// and half an interval of records follows it.
		const every = 50_000
		n := (*pods/every+1)*every + every/2
		env.logf("writing a %d-pod fleet's journal, %d records", *pods, n)
		if _, err := writeHistory(ctx, *dir, *pods, n, 0, func(int) time.Time { return time.Now() }, every, journal.Retention{}); err != nil {
			return nil, err
		}
	}
	fmt.Printf("\nreaders: %s\n", *dir)
	printMachine(env)
	src := ctl.Source{Dir: *dir}
	out := map[string]any{"journal": *dir}
	row := func(name string, whole, now func() (uint64, error)) error {
		env.logf("%s", name)
		t0 := time.Now()
		n0, err := whole()
		if err != nil {
			return err
		}
		d0 := time.Since(t0)
		t1 := time.Now()
		n1, err := now()
		if err != nil {
			return err
		}
		d1 := time.Since(t1)
		fmt.Printf("  %-30s from record 1: %9d records %9s; now: %9d records %9s (%.0fx)\n", name, n0, d0.Round(time.Millisecond), n1, d1.Round(time.Millisecond), d0.Seconds()/d1.Seconds())
		out[name] = map[string]any{"whole_records": n0, "whole_s": round(d0.Seconds(), 3), "records": n1, "s": round(d1.Seconds(), 3), "ratio": round(d0.Seconds()/d1.Seconds(), 1)}
		return nil
	}
	fold := func(read func(base func(*projections.Books) error, fn func(journal.Record) error) error) (uint64, error) {
		var n uint64
		s := projections.New()
		err := read(func(b *projections.Books) error { s = b.State; return nil }, func(r journal.Record) error { n++; return s.Apply(r) })
		return n, err
	}
	err := row("status (the state now)",
		func() (uint64, error) {
			return fold(func(base func(*projections.Books) error, fn func(journal.Record) error) error {
				return src.ReadFrom(ctx, base, fn)
			})
		},
		func() (uint64, error) {
			return fold(func(base func(*projections.Books) error, fn func(journal.Record) error) error {
				return src.ReadLatest(ctx, base, fn)
			})
		})
	if err != nil {
		return nil, err
	}
	if *rollout != "" {
		var spans [2]int
		err := row("history of "+*rollout,
			func() (uint64, error) {
				var n uint64
				s, err := tracing.Build(ctx, func(ctx context.Context, _ uint64, fn func(journal.Record) error) error {
					return src.Read(ctx, func(r journal.Record) error { n++; return fn(r) })
				}, *rollout)
				spans[0] = len(s)
				return n, err
			},
			func() (uint64, error) {
				var n uint64
				s, err := tracing.Build(ctx, func(ctx context.Context, _ uint64, fn func(journal.Record) error) error {
					return src.ReadRolloutRecords(ctx, *rollout, func(r journal.Record) error { n++; return fn(r) })
				}, *rollout)
				spans[1] = len(s)
				return n, err
			})
		if err != nil {
			return nil, err
		}
		if spans[0] != spans[1] || spans[0] == 0 {
			return nil, fmt.Errorf("history of %s: %d spans from record 1, %d from its first record", *rollout, spans[0], spans[1])
		}
	}

	// The journal API: bytes for each request, from the open journal.
	j, err := ctl.OpenExisting(*dir)
	if err != nil {
		return nil, err
	}
	defer j.Close()
	reqs := []struct {
		name string
		req  ctl.JournalRequest
	}{{"every record (from=1)", ctl.JournalRequest{From: 1}}, {"checkpoint=latest", ctl.JournalRequest{From: 1, Latest: true}}}
	if *rollout != "" {
		reqs = append(reqs, struct {
			name string
			req  ctl.JournalRequest
		}{"rollout=" + *rollout, ctl.JournalRequest{From: max(1, ctl.RolloutOrigin(ctx, j, *rollout))}})
	}
	api := map[string]any{}
	for _, r := range reqs {
		var c byteCounter
		t0 := time.Now()
		if err := ctl.WriteJournal(ctx, &c, j, r.req); err != nil {
			return nil, err
		}
		fmt.Printf("  journal API, %-24s %10.1f MiB in %s\n", r.name+":", mib(float64(c)), time.Since(t0).Round(time.Millisecond))
		api[r.name] = mib(float64(c))
	}
	out["journal_api_mib"] = api

	// What serving the state's checkpoint costs.
	infos, err := j.Checkpoints()
	if err == nil && len(infos) == 0 {
		err = errors.New("it has none")
	}
	if err != nil {
		return nil, fmt.Errorf("the journal's newest checkpoint: %w", err)
	}
	c := infos[len(infos)-1]
	size := float64(c.Bytes)
	// What send allocates, and how far the process's RSS peaks above
	// where it was (the kernel's peak, VmHWM, reset before), collecting
	// as a controller that has caught up does.
	_, restore := ctl.SteadyGC(0, ctl.SteadyGCRoom)
	defer restore()
	allocated := func(send func(io.Writer) error) (alloc, peak, sent float64, err error) {
		var before, after runtime.MemStats
		debug.FreeOSMemory()
		rss, err := procStatusKB(os.Getpid(), "VmRSS")
		if err != nil {
			return 0, 0, 0, err
		}
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			return 0, 0, 0, err
		}
		runtime.ReadMemStats(&before)
		var c byteCounter
		if err := send(&c); err != nil {
			return 0, 0, 0, err
		}
		runtime.ReadMemStats(&after)
		hwm, err := procStatusKB(os.Getpid(), "VmHWM")
		return float64(after.TotalAlloc - before.TotalAlloc), float64(hwm-rss) * 1024, float64(c), err
	}
	// The records after the checkpoint, alike in every form, alone.
	records, recordsPeak, _, err := allocated(func(w io.Writer) error {
		return ctl.WriteJournal(ctx, w, j, ctl.JournalRequest{From: 1, Latest: true, Checkpoint: ctl.CheckpointLeftOut})
	})
	if err != nil {
		return nil, err
	}
	fmt.Printf("  journal API, checkpoint=latest, the checkpoint at record %d (%.1f MiB); the records after it alone: %.1f MiB allocated, RSS peak +%.1f MiB\n", c.Seq, mib(size), mib(records), mib(recordsPeak))
	alloc := map[string]any{"checkpoint_mib": mib(size), "records_allocated_mib": mib(records), "records_peak_mib": mib(recordsPeak)}
	for _, f := range []struct {
		name string
		send func(io.Writer) error
	}{
		{"held whole, as before", func(w io.Writer) error { return serveWhole(ctx, j, w) }},
		{"in pieces", func(w io.Writer) error {
			return ctl.WriteJournal(ctx, w, j, ctl.JournalRequest{From: 1, Latest: true, Checkpoint: ctl.CheckpointInPieces})
		}},
		{"in the header (older readers)", func(w io.Writer) error {
			return ctl.WriteJournal(ctx, w, j, ctl.JournalRequest{From: 1, Latest: true, Checkpoint: ctl.CheckpointInHeader})
		}},
	} {
		a, peak, sent, err := allocated(f.send)
		if err != nil {
			return nil, err
		}
		a -= records
		fmt.Printf("    %-32s allocated %8.2f MiB more (%.2f× the checkpoint), RSS peak +%6.1f MiB (%.2f×), %.1f MiB sent\n", f.name+":", mib(a), a/size, mib(peak), peak/size, mib(sent))
		alloc[f.name] = map[string]any{"allocated_more_mib": mib(a), "peak_mib": mib(peak), "sent_mib": mib(sent)}
	}
	out["journal_api_checkpoint"] = alloc
	return out, nil
}

// serveWhole is what the journal API sent for checkpoint=latest before it
// sent checkpoints a stretch at a time (ctl.WriteJournal until 2026-12-07):
// the checkpoint read whole, then its header line, base64 and all, made
// and written, then the records after it (as WriteJournal sends them, a
// short header line of their own ahead).
func serveWhole(ctx context.Context, j *journal.Journal, w io.Writer) error {
	c, _, err := j.LatestCheckpoint(0)
	if err != nil {
		return err
	}
	head, err := json.Marshal(struct {
		Journal    string `json:"journal"`
		First      uint64 `json:"first"`
		Last       uint64 `json:"last"`
		Anchor     string `json:"anchor,omitempty"`
		Checkpoint []byte `json:"checkpoint,omitempty"`
	}{j.ID(), c.Seq + 1, c.Seq, hex.EncodeToString(c.Hash[:]), c.Data})
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(append(head, '\n'))
	if err := bw.Flush(); err != nil {
		return err
	}
	return ctl.WriteJournal(ctx, w, j, ctl.JournalRequest{From: c.Seq + 1, Checkpoint: ctl.CheckpointLeftOut})
}

// byteCounter counts what is written to it.
type byteCounter int64

func (c *byteCounter) Write(p []byte) (int, error) { *c += byteCounter(len(p)); return len(p), nil }
