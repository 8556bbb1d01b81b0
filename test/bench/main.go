// Command bench measures Rollbook against its baselines on this machine:
// each subcommand starts what it needs (a local control plane, a
// simulated fleet: kwok, or --fleet lean), measures Rollbook and the thing it is compared with in the same
// run, and prints the figures, their ratio and a one-line JSON summary
// (the last line of its output).
//
//	go run ./test/bench ingest-memory --pods 10000
//	go run ./test/bench restart --pods 10000
//	go run ./test/bench rollout --pods 10000 --nodes 100
//	go run ./test/bench compare --pods 1000 --nodes 20
//	go run ./test/bench fleet --pods 10000 --nodes 100 --fleet kwok,lean
//	go run ./test/bench startup --pods 10000 --records 1000000,10000000
//	go run ./test/bench shards --shards 3 --pods-per-shard 1000 --nodes 30
//	go run ./test/bench tenants --pods 1000 --nodes 20 --tenants 4
//
// These machines are shared and noisy: the ratios are the figures to
// trust, and each summary carries the load average at the start and end.
// BENCHMARKS.md records the commands and the figures.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"rollbook.dev/rollbook/test/cluster"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"
)

type command struct {
	run  func(ctx context.Context, env *benchEnv, args []string) (map[string]any, error)
	help string
}

var commands = map[string]command{
	"ingest-memory": {ingestMemoryCmd, "heap per tracked pod: ingest vs a client-go SharedInformer"},
	"restart":       {restartCmd, "resume from the journaled cursor vs a full relist"},
	"plan-cost":     {planCostCmd, "planner.Plan's cost on a kept rollout journal's state, copied 1..k times"},
	"held":          {heldCmd, "the heap a kept rollout journal's fold holds per pod, at the rollout's start and at its end"},
	"phases":        {phasesCmd, "a kept rollout journal's per-pod phases, and where Rollbook's first own step goes"},
	"rollout":       {rolloutCmd, "an in-place rollout by the rollbook binary on a kwok fleet vs the apiserver's write capacity"},
	"startup":       {startupCmd, "start-up from the latest checkpoint vs from record 1, by journal age; disk after a simulated month"},
	"memory":        {memoryCmd, "whole-process RSS per tracked pod at 10k and 100k pods: the controller's state vs an informer's store"},
	"replay":        {replayCmd, "replay of a recorded rollout journal vs reading it with the chain verified"},
	"standby":       {standbyCmd, "a new standby's journal filled from the stream: from the checkpoint shipped beside it vs from record 1; the checkpoint's size in the bucket"},
	"readers":       {readersCmd, "status and history from the newest checkpoint and the rollout's first record vs from record 1, and the journal API's bytes"},
	"compare":       {compareCmd, "the same in-place rollout by rollbook and by OpenKruise on one cluster, writes from the audit log"},
	"fleet":         {fleetCmd, "control run without Rollbook: image patches at a fixed rate, restart latency of kwok and the lean simulated kubelet"},
	"shards":        {shardsCmd, "N controllers, each on its own namespace and journal, rolling at once on one cluster; each journal replayed"},
	"tenants":       {tenantsCmd, "the same rollout at the shipped defaults alone and while other tenants load the apiserver; APF and 429s from the server's side"},
}

// benchEnv is what every subcommand shares: progress output and the
// machine note.
type benchEnv struct {
	name     string
	verbose  bool
	progress io.Writer // component start-up and build output (stderr with -v)
	start    time.Time
	load0    string
}

// logf prints a progress line to stderr, with the time since the start.
func (e *benchEnv) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%7s] "+format+"\n", append([]any{time.Since(e.start).Round(100 * time.Millisecond)}, a...)...)
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	if os.Args[1] == "memory-child" { // memory's measured processes
		if err := memoryChild(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench memory-child: %v\n", err)
			os.Exit(1)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown subcommand %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &benchEnv{name: os.Args[1], progress: io.Discard, start: time.Now(), load0: loadAvg()}
	// Common flags, anywhere among the subcommand's: -v, --cpuprofile f,
	// --memprofile f (what the run allocated, written when it ends).
	var args []string
	var cpuprofile, memprofile string
	for rest := os.Args[2:]; len(rest) > 0; rest = rest[1:] {
		switch a := rest[0]; {
		case a == "-v" || a == "--v":
			env.verbose, env.progress = true, os.Stderr
		case (a == "--cpuprofile" || a == "-cpuprofile") && len(rest) > 1:
			cpuprofile = rest[1]
			rest = rest[1:]
		case strings.HasPrefix(a, "--cpuprofile=") || strings.HasPrefix(a, "-cpuprofile="):
			_, cpuprofile, _ = strings.Cut(a, "=")
		case (a == "--memprofile" || a == "-memprofile") && len(rest) > 1:
			memprofile = rest[1]
			rest = rest[1:]
		case strings.HasPrefix(a, "--memprofile=") || strings.HasPrefix(a, "-memprofile="):
			_, memprofile, _ = strings.Cut(a, "=")
		default:
			args = append(args, a)
		}
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	summary, err := cmd.run(ctx, env, args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", env.name, err)
		if cpuprofile != "" {
			pprof.StopCPUProfile()
		}
		os.Exit(1)
	}
	if memprofile != "" {
		if err := writeMemProfile(memprofile); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
	}
	summary["bench"] = env.name
	summary["machine"] = machineNote(env)
	b, err := json.Marshal(summary)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(string(b))
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go run ./test/bench <subcommand> [-v] [--cpuprofile file] [--memprofile file] [flags]\n\nsubcommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-14s %s\n", n, commands[n].help)
	}
}

// newFlags is a flag set for a subcommand that prints its usage on -h.
func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet(name, flag.ContinueOnError)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func machineNote(env *benchEnv) map[string]any {
	return map[string]any{
		"cpus":          runtime.NumCPU(),
		"go":            runtime.Version(),
		"load_at_start": env.load0,
		"load_at_end":   loadAvg(),
		"seconds":       round(time.Since(env.start).Seconds(), 1),
	}
}

// printMachine prints the machine note as a figure block line.
func printMachine(env *benchEnv) {
	fmt.Printf("machine: %d CPUs, %s, load average %s at start, %s now (1/5/15 min)\n",
		runtime.NumCPU(), runtime.Version(), env.load0, loadAvg())
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return float64(int64(v*p-0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

func median(xs []time.Duration) time.Duration {
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = round(d.Seconds(), 3)
	}
	return out
}

func mib(b float64) float64 { return round(b/(1<<20), 1) }

// workDir makes a benchmark's work directory (logs, journals, audit log)
// and returns what removes it, or, with keep, says where it is and leaves it.
func (e *benchEnv) workDir(name string, keep bool) (string, func(), error) {
	root, err := os.MkdirTemp("", "rollbook-bench-"+name+"-")
	if err != nil {
		return "", nil, err
	}
	if keep {
		e.logf("work directory %s (kept)", root)
		return root, func() {}, nil
	}
	return root, func() { os.RemoveAll(root) }, nil
}

// benchCluster is the control plane every cluster bench runs on: the
// apiserver's in-flight limits raised to 2,000 and 1,000 (upstream: 400
// and 200), as a large cluster's control plane is sized and as every
// figure in BENCHMARKS.md was measured. Tests and the demo keep the
// upstream defaults.
func benchCluster(o cluster.Options) cluster.Options {
	o.MaxRequestsInflight, o.MaxMutatingRequestsInflight = 2000, 1000
	return o
}

// writeMemProfile writes the allocations of the whole run to path
// (go tool pprof -sample_index=alloc_space).
func writeMemProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
