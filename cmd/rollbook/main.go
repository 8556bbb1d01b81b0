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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"rollbook.dev/rollbook/ctl"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs one command line and returns the exit code: 0 for success and
// for -h, 1 for a command that failed, 2 for a command line that names no
// command.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, "rollbook", version())
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "rollbook: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0 // -h: the flag set printed its usage
	}
	if err != nil {
		fmt.Fprintf(stderr, "rollbook %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: rollbook <command> [flags]   (rollbook <command> -h for its flags)\n\ncommands:")
	for _, name := range []string{"demo", "run", "status", "plan", "replay", "history", "trace", "report", "journal"} {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].help)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "version", "print the version")
}

// version is the module version the binary was built from.
func version() string { return ctl.Version() }
