// Command kubectl-rollbook is the kubectl plugin of Rollbook: operators
// drive InPlaceRollouts on a running install with it, as `kubectl
// rollbook <verb>`, the way `kubectl rollout` and `kubectl argo rollouts`
// drive theirs.
//
//	go install rollbook.dev/rollbook/cmd/kubectl-rollbook@latest
//
//	kubectl rollbook get [NAME]          rollouts, as the apiserver has them
//	kubectl rollbook status NAME         wait for the rollout to end; exit 1 when it fails
//	kubectl rollbook approve NAME        release the step pause it waits at
//	kubectl rollbook pause|resume NAME   hold it; let it go on (also after abort)
//	kubectl rollbook abort NAME          stop it and release every gate now
//	kubectl rollbook undo NAME           roll back in place to the previous revision
//	kubectl rollbook history NAME        per-pod timeline, from the controller's journal
//	kubectl rollbook trace NAME          its spans as a waterfall
//	kubectl rollbook report NAME         one self-contained HTML page
//	kubectl rollbook plan -f FILE|NAME   dry run: which pods in which batch, and why
//
// Flags come anywhere on the line (spf13/pflag, as kubectl's own), and are
// spelt as kubectl spells them: -n/--namespace, --context, --kubeconfig,
// -o json|yaml. The journal verbs read the controller's journal API
// (--controller, or ROLLBOOK_CONTROLLER) with the kubeconfig's token, or a
// journal copy (--dir, --export, --nats-url).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"rollbook.dev/rollbook/ctl"
)

// verb is one `kubectl rollbook` command.
type verb struct {
	run   func(ctx context.Context, e *env, args []string) error
	usage string
	help  string
}

var verbs = map[string]verb{
	"get":     {getVerb, "get [NAME] [-A] [-o json|yaml]", "list rollouts, or show one"},
	"status":  {statusVerb, "status NAME [--watch=false] [--timeout 10m] [-o json|yaml]", "wait until the rollout of its current revision ends: exit 0 when it succeeds, 1 when it fails"},
	"approve": {approveVerb, "approve NAME", "approve the step pause the rollout waits at"},
	"pause":   {pauseVerb, "pause NAME", "hold the rollout: pods being updated finish, no new one starts"},
	"resume":  {resumeVerb, "resume NAME", "let a paused or aborted rollout go on"},
	"abort":   {abortVerb, "abort NAME", "stop the rollout and release every gate at once (spec.abort)"},
	"undo":    {undoVerb, "undo NAME [--to-revision N]", "roll back in place to the previous revision"},
	"history": {historyVerb, "history NAME [-o json|yaml]", "per-pod timeline, from the controller's journal"},
	"trace":   {traceVerb, "trace NAME [-o json|yaml]", "the rollout's spans as a waterfall"},
	"report":  {reportVerb, "report NAME [--out report.html]", "one self-contained HTML page of the rollout"},
	"plan":    {planVerb, "plan (-f FILE | NAME) [-o json|yaml]", "dry run: which pods in which batch, and why"},
}

var order = []string{"get", "status", "approve", "pause", "resume", "abort", "undo", "history", "trace", "report", "plan"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks a command line that is wrong (exit 2), not a command that
// failed (exit 1).
var errUsage = errors.New("bad command line")

// run runs one command line and returns the exit code: 0 for success and
// for --help, 1 for a command that failed (a rollout that failed, for
// status), 2 for a command line that is wrong.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, "kubectl-rollbook", ctl.Version())
		return 0
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kubectl rollbook: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	e := &env{name: args[0], usage: v.usage, help: v.help, stdout: stdout, stderr: stderr}
	err := v.run(ctx, e, args[1:])
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "kubectl rollbook %s: %v\nusage: kubectl rollbook %s\n", args[0], err, v.usage)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "kubectl rollbook %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kubectl rollbook <command> [flags]   (kubectl rollbook <command> --help for its flags)\n\ncommands:")
	for _, name := range order {
		fmt.Fprintf(w, "  %-8s %s\n", name, verbs[name].help)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "version", "print the version")
	fmt.Fprintln(w, "\nkubectl's flags: -n/--namespace, --context, --kubeconfig; -o json|yaml where a command prints state.")
}
