package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
)

// `rollbook report` renders one rollout, rebuilt from a journal directory,
// as a single self-contained HTML file (ctl.RenderReport says what is on
// the page).
func reportCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	dir := fs.String("dir", "rollbook-journal", "journal directory")
	rollout := fs.String("rollout", "", "the rollout, namespace/name (may be left out when the journal holds only one)")
	out := fs.String("o", "report.html", `output file ("-" for standard output)`)
	maxRows := fs.Int("max-rows", ctl.ReportDefaultMaxRows, "most pod rows in the timeline; beyond it steps collapse to aggregate rows")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: usage: rollbook report --dir DIR [--rollout ns/name] [-o report.html]", fs.Args())
	}
	if *maxRows < 0 {
		return fmt.Errorf("--max-rows is %d, must be >= 0", *maxRows)
	}
	if *out == "" {
		return errors.New("-o is empty: name an output file, or - for standard output")
	}
	j, err := openExisting(*dir)
	if err != nil {
		return err
	}
	defer j.Close()
	headSeq, headHash := j.Last()
	read := j.Read
	if *rollout != "" {
		if from := ctl.RolloutOrigin(ctx, j, *rollout); from > j.First() {
			// The rollout's records begin there (ctl.Spans reads so too).
			read = func(ctx context.Context, _ uint64, fn func(journal.Record) error) error { return j.Read(ctx, from, fn) }
		}
	}
	spans, err := ctl.ReportSpans(ctx, read, *rollout, *dir)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	err = ctl.RenderReport(&buf, spans, ctl.ReportOptions{
		JournalID: j.ID(), HeadSeq: headSeq, HeadHash: headHash, MaxRows: *maxRows,
	})
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err := os.Stdout.Write(buf.Bytes())
		return err
	}
	if err := ctl.WriteFile(*out, buf.Bytes()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "rollbook report: wrote %s (%s, %d KiB)\n", *out, ctl.ReportTitle(spans), (buf.Len()+1023)/1024)
	return nil
}
