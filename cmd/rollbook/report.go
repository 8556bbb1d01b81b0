package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"rollbook.dev/rollbook/ctl"
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
	page, title, err := ctl.Report(ctx, ctl.Source{Dir: *dir}, *rollout, *maxRows)
	if err != nil {
		return err
	}
	if *out == "-" {
		_, err := os.Stdout.Write(page)
		return err
	}
	if err := ctl.WriteFile(*out, page); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "rollbook report: wrote %s (%s, %d KiB)\n", *out, title, (len(page)+1023)/1024)
	return nil
}
