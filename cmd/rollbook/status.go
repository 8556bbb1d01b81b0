package main

import (
	"context"
	"flag"
	"os"

	"rollbook.dev/rollbook/ctl"
)

// statusCmd prints every rollout as the journal last saw it: what
// `kubectl get ipr` shows, plus the conditions, from any journal copy.
func statusCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	src := sourceFlags(fs)
	output := fs.String("o", "", "output format: json or yaml (default: a table)")
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs, "rollbook status --dir DIR [-o json|yaml]"); err != nil {
		return err
	}
	if err := ctl.CheckFormat(*output); err != nil {
		return err
	}
	s, err := ctl.FoldState(ctx, src.source())
	if err != nil {
		return err
	}
	return ctl.Status(os.Stdout, *output, s)
}
