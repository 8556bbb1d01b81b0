// Command rollbook rolls new images and resources into existing Kubernetes
// pods in place, and keeps a journal of everything it saw and did.
//
//	rollbook demo       the whole system on this machine, with a rollout
//	rollbook run        the controller
//	rollbook status     rollouts as the journal last saw them
//	rollbook plan       dry run: which pods in which batch, and why
//	rollbook replay     fold a journal through today's planner, compare
//	rollbook history    a rollout's per-pod timeline
//	rollbook trace      a rollout's spans, rebuilt from the journal
//	rollbook report     a rollout as one HTML page
//	rollbook journal    tail | export | verify a journal
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

var commands = map[string]struct {
	run  func(ctx context.Context, args []string) error
	help string
}{
	"run":     {runCmd, "run the controller against a cluster"},
	"demo":    {demoCmd, "start a local cluster and fleet, roll a new image in place, report"},
	"journal": {journalCmd, "tail | export | verify a journal directory"},
	"replay":  {replayCmd, "replay a journal through today's planner; exit 1 on the first divergence"},
	"trace":   {traceCmd, "rebuild a rollout's spans from the journal: a waterfall, or export to OTLP"},
	"history": {historyCmd, "a rollout's per-pod timeline with the records behind each step"},
	"report":  {reportCmd, "a rollout as one self-contained HTML page: summary, per-pod timeline, failures"},
	"status":  {statusCmd, "every rollout as the journal last saw it"},
	"plan":    {planCmd, "dry run: which pods a rollout would update, in which batch, and why"},
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "rollbook: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "rollbook %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rollbook <command> [flags]\n\ncommands:")
	for _, name := range []string{"demo", "run", "status", "plan", "replay", "history", "trace", "report", "journal"} {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", name, commands[name].help)
	}
}
