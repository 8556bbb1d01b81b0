package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"rollbook.dev/rollbook/actuator"
	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/test/cluster"
)

// planTime is the mean time of a steady plan ("-" for none).
func (r childResult) planTime() string {
	if r.SteadyPlans == 0 {
		return "-"
	}
	return (time.Duration(r.SteadyPlanNs) / time.Duration(r.SteadyPlans)).Round(10 * time.Microsecond).String()
}

// memoryVariants are memory's variants, in the order it runs them.
var memoryVariants = []string{"rollbook", "idle", "rolled", "finished", "rerolled", "informer"}

// memoryCmd measures whole-process memory per tracked pod: each variant
// runs in a process of its own (this program, re-executed, built without
// cgo as the image builds rollbook), fed the same N pods as a watch
// delivers them (JSON), then a third of them updated and, until the
// collector has cycled steadyCycles times, what an idle process does
// (the steady state: churn, untilCycles), and reports from /proc its
// peak resident set while it caught up, its peak through the steady
// state (VmHWM, reset between the two), its resident set at the end once
// the runtime has returned what it will (settle), and its live heap. The
// marginal cost per pod is (figure at N − figure at 0) ÷ N, both measured
// in the same run, and between two sizes (figure at N − figure at M) ÷
// (N − M): what one pod more costs there. RSS is also told in its parts:
// anonymous (the heap and the runtime's own) and file-backed (the
// binary's pages it has run).
//
//   - rollbook: what the controller keeps per pod, through its own code:
//     each pod compacted by ingest (ingest.Compact), journaled in a real
//     Pebble journal (group commits of 512, fsync, as ingest appends a
//     list), folded by the controller's fold (projections.Books), ingest's
//     known set seeded from it as the controller does at start, and let
//     go through the steady updates, as the controller's ingester lets it
//     go once its watch passes the newest version on record
//     (ingest.Options.Reload; TestKnownSetLetGoAndTakenBack), then one rollout
//     over every pod planned by the controller's planner, kept
//     (planner.Incremental: its caches are per pod too); caught up, it
//     collects at the controller's steady target (ctl.SteadyGC).
//   - idle: the same with no rollout: a fleet the controller tracks
//     between rollouts, planned (the planner holds nothing per pod then).
//   - rolled: idle, but every pod was updated in place by the rollout
//     before (rolledPod), each pod carrying the state annotation its
//     patch wrote.
//   - finished: rolled, with that rollout still there and Succeeded, as
//     a rollout stays until deleted (a workload's rollout rolls each of
//     its revisions): the state a fleet Rollbook manages is in between
//     rollouts. The planner keeps its claims and its pods.
//   - rerolled: rollbook's rollout over the rolled fleet: every rollout
//     after a fleet's first.
//   - informer: a SharedInformer's store (cache.Indexer with the
//     namespace index) of the same pods decoded into typed corev1.Pod
//     objects, as its reflector keeps them; managedFields are absent
//     (what a well-tuned informer strips), at Go's default GOGC.
//
// No apiserver: the pods are made in process, so 100,000 fit on this
// machine; the HTTP and watch machinery, which does not grow with pods,
// is left out of both.
func memoryCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("memory")
	podsList := fs.String("pods", "10000,20000,100000", "comma-separated pod counts (0 is always measured too)")
	gogc := fs.String("gogc", "", "GOGC for the child processes (default: the Go default, 100)")
	runs := fs.Int("runs", 1, "processes per variant and count; each figure is the median of theirs")
	variantList := fs.String("variants", strings.Join(memoryVariants, ","), "comma-separated variants to measure")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	variants := strings.Split(*variantList, ",")
	for _, v := range variants {
		if !slices.Contains(memoryVariants, v) {
			return nil, fmt.Errorf("--variants: %q is none of %s", v, strings.Join(memoryVariants, ", "))
		}
	}
	has := func(vs ...string) bool {
		for _, v := range vs {
			if !slices.Contains(variants, v) {
				return false
			}
		}
		return true
	}
	counts := []int{0}
	for _, f := range strings.Split(*podsList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--pods: %q", f)
		}
		counts = append(counts, n)
	}
	slices.Sort(counts)
	counts = slices.Compact(counts)
	if *runs < 1 {
		return nil, fmt.Errorf("--runs %d: at least 1", *runs)
	}
	self, done, err := childBinary(ctx, env)
	if err != nil {
		return nil, err
	}
	defer done()
	results := map[string]map[int]childResult{}
	for _, v := range variants {
		results[v] = map[int]childResult{}
	}
	fmt.Printf("\nmemory: whole-process RSS per tracked pod, each variant in its own process, pods %v, %d run(s) each\n", counts, *runs)
	printMachine(env)
	for _, n := range counts {
		for _, v := range variants {
			var all []childResult
			for range *runs {
				cmd := exec.CommandContext(ctx, self, "memory-child", v, strconv.Itoa(n))
				cmd.Stderr = env.progress
				if *gogc != "" {
					cmd.Env = append(os.Environ(), "GOGC="+*gogc)
				}
				start := time.Now()
				out, err := cmd.Output()
				if err != nil {
					return nil, fmt.Errorf("%s at %d pods: %w", v, n, err)
				}
				var r childResult
				if err := json.Unmarshal(out, &r); err != nil {
					return nil, fmt.Errorf("%s at %d pods: %w: %s", v, n, err, out)
				}
				all = append(all, r)
				env.logf("%-8s %7d pods: catch-up peak RSS %7.1f MiB, steady peak %7.1f MiB (%d collections), settled RSS %7.1f MiB (anonymous %6.1f, file %5.1f), heap live %7.1f MiB, %s a steady plan (%s)",
					v, n, mib(r.CatchUpHWM), mib(r.HWM), r.SteadyCycles, mib(r.RSS), mib(r.Anon), mib(r.File), mib(r.HeapLive), r.planTime(), time.Since(start).Round(time.Second))
			}
			results[v][n] = medianResult(all)
		}
	}
	summary := map[string]any{}
	for _, n := range counts[1:] {
		fmt.Printf("\n  %d pods (marginal over the same variant at 0 pods):\n", n)
		per := map[string]figures{}
		for _, v := range variants {
			r := results[v][n]
			p := perPod(results[v][0], r)
			per[v] = p
			fmt.Printf("    %-8s catch-up peak %7.1f MiB (%6.0f B/pod), steady peak %7.1f MiB (%6.0f B/pod), settled RSS %7.1f MiB (%6.0f B/pod: anonymous %6.0f, file %4.0f), heap live %6.0f B/pod\n",
				v, mib(r.CatchUpHWM), p.CatchUpHWM, mib(r.HWM), p.HWM, mib(r.RSS), p.RSS, p.Anon, p.File, p.HeapLive)
			summary[fmt.Sprintf("%s_%d", v, n)] = map[string]any{"catch_up_peak_mib": mib(r.CatchUpHWM), "catch_up_peak_b_per_pod": round(p.CatchUpHWM, 0),
				"steady_peak_mib": mib(r.HWM), "steady_peak_b_per_pod": round(p.HWM, 0), "rss_b_per_pod": round(p.RSS, 0),
				"anon_b_per_pod": round(p.Anon, 0), "file_b_per_pod": round(p.File, 0), "heap_b_per_pod": round(p.HeapLive, 0)}
		}
		if has("informer", "rollbook") {
			fmt.Printf("    informer ÷ rollbook: steady peak per pod %.1f×, settled RSS per pod %.1f×, heap per pod %.1f×\n",
				per["informer"].HWM/per["rollbook"].HWM, per["informer"].RSS/per["rollbook"].RSS, per["informer"].HeapLive/per["rollbook"].HeapLive)
		}
		for _, c := range []struct{ v, what string }{
			{"rollbook", "a rollout over every pod costs"},
			{"rerolled", "a rollout over a rolled fleet costs"},
			{"rolled", "a finished rollout's pods keep"},
			{"finished", "a finished rollout and its pods keep"},
		} {
			if has(c.v, "idle") {
				fmt.Printf("    %s, above the idle fleet: steady peak %+.0f B/pod, settled RSS %+.0f B/pod, heap %+.0f B/pod\n",
					c.what, per[c.v].HWM-per["idle"].HWM, per[c.v].RSS-per["idle"].RSS, per[c.v].HeapLive-per["idle"].HeapLive)
			}
		}
		if e := results["rollbook"][n].Encoded; has("rollbook") && e != nil {
			fmt.Printf("    held encoded instead (BENCHMARKS §1): a folded pod's record is %.0f B; decoding one takes %.1f µs, %.0f ms for all %d, which a plan reading every pod would pay\n",
				e.Bytes, e.DecodeNs/1e3, e.DecodeNs*float64(n)/1e6, n)
			fmt.Printf("    what a pod has of its own (strings no other pod has, 8 B a timestamp or counter): %.0f B\n", e.Own)
			summary[fmt.Sprintf("encoded_idle_%d", n)] = map[string]any{"bytes_per_pod": round(e.Bytes, 0), "decode_us_per_pod": round(e.DecodeNs/1e3, 2), "own_bytes_per_pod": round(e.Own, 0)}
		}
	}
	// The same figures between two fleet sizes: what one more pod costs
	// there, without what a process pays once it holds any (Pebble's
	// memtables once the journal has been written to, the binary's pages
	// of the fold and the planner once they have run).
	for i := 2; i < len(counts); i++ {
		a, b := counts[i-1], counts[i]
		fmt.Printf("\n  from %d to %d pods (marginal per pod added):\n", a, b)
		per := map[string]figures{}
		for _, v := range variants {
			p := perPod(results[v][a], results[v][b])
			per[v] = p
			fmt.Printf("    %-8s steady peak %6.0f B/pod, settled RSS %6.0f B/pod (anonymous %6.0f, file %4.0f), heap live %6.0f B/pod\n",
				v, p.HWM, p.RSS, p.Anon, p.File, p.HeapLive)
			summary[fmt.Sprintf("%s_%d_to_%d", v, a, b)] = map[string]any{"steady_peak_b_per_pod": round(p.HWM, 0), "rss_b_per_pod": round(p.RSS, 0),
				"anon_b_per_pod": round(p.Anon, 0), "file_b_per_pod": round(p.File, 0), "heap_b_per_pod": round(p.HeapLive, 0)}
		}
		if has("informer", "rollbook") {
			fmt.Printf("    informer ÷ rollbook: steady peak per pod %.1f×, settled RSS per pod %.1f×\n",
				per["informer"].HWM/per["rollbook"].HWM, per["informer"].RSS/per["rollbook"].RSS)
		}
	}
	return summary, nil
}

// figures are a child's figures, or their growth per pod between two.
type figures struct{ CatchUpHWM, HWM, RSS, Anon, File, HeapLive float64 }

func (r childResult) figures() figures {
	return figures{r.CatchUpHWM, r.HWM, r.RSS, r.Anon, r.File, r.HeapLive}
}

// perPod is (to − from) ÷ (the pods it added).
func perPod(from, to childResult) figures {
	a, b, n := from.figures(), to.figures(), float64(to.Pods-from.Pods)
	return figures{(b.CatchUpHWM - a.CatchUpHWM) / n, (b.HWM - a.HWM) / n, (b.RSS - a.RSS) / n, (b.Anon - a.Anon) / n,
		(b.File - a.File) / n, (b.HeapLive - a.HeapLive) / n}
}

// medianResult is the first of all with each figure the median of all's.
func medianResult(all []childResult) childResult {
	r := all[0]
	for _, f := range []func(*childResult) *float64{
		func(c *childResult) *float64 { return &c.CatchUpHWM }, func(c *childResult) *float64 { return &c.HWM },
		func(c *childResult) *float64 { return &c.RSS }, func(c *childResult) *float64 { return &c.Anon },
		func(c *childResult) *float64 { return &c.File }, func(c *childResult) *float64 { return &c.HeapLive },
	} {
		v := make([]float64, len(all))
		for i := range all {
			v[i] = *f(&all[i])
		}
		slices.Sort(v)
		*f(&r) = v[len(v)/2]
	}
	return r
}

// childBinary is this program built as the image builds rollbook
// (buildAsImage), or this very binary when it was built so. done removes
// what it built.
func childBinary(ctx context.Context, env *benchEnv) (bin string, done func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "CGO_ENABLED" && s.Value == "0" {
				return self, func() {}, nil
			}
		}
	}
	src, err := cluster.SourceDir()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "rollbook-bench-nocgo-")
	if err != nil {
		return "", nil, err
	}
	done = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "bench")
	env.logf("building this bench without cgo, as the image builds rollbook")
	if err := buildAsImage(ctx, src, "./test/bench", bin); err != nil {
		done()
		return "", nil, err
	}
	return bin, done, nil
}

type childResult struct {
	// CatchUpHWM is the peak RSS while the process caught up (folded the
	// fleet; built the store); HWM the peak since, through the steady
	// updates (see churn); RSS the resident set at the end, settled.
	CatchUpHWM         float64
	HWM, RSS, HeapLive float64
	// Anon and File are RSS's parts (RssAnon, RssFile): the heap and the
	// runtime's memory, and the binary's pages the process has read.
	Anon, File float64
	// HeapUnused is the slots of the heap's spans that hold no object
	// (/memory/classes/heap/unused): what the heap's fragmentation costs
	// on top of HeapLive, after the same collections.
	HeapUnused float64
	// Settled is the runtime's own account of its memory once settled
	// (/memory/classes/...): the heap's objects, unused slots and free
	// pages it keeps (not yet returned), and its metadata. Their sum with
	// the stacks is about Anon.
	Settled settledClasses
	Pods    int
	Actions int
	// SteadyPlans and SteadyPlanNs are the plans made through the steady
	// updates (one per 512 records, as the controller's loop) and the
	// time they took together.
	SteadyPlans  int
	SteadyPlanNs int64
	// SteadyCycles is how often the collector cycled from the reset of
	// the peak to its reading (at least steadyCycles).
	SteadyCycles uint64
	// Encoded is what holding idle pods encoded would take instead (see
	// encodedIdle); rollbook variant only.
	Encoded *encodedIdle `json:",omitempty"`
}

// memoryChild is one measured process: memory-child <variant> <pods>.
// It prints a childResult as JSON on stdout.
func memoryChild(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: memory-child %s <pods>", strings.Join(memoryVariants, "|"))
	}
	if os.Getenv("BENCH_MEMORY_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 4096 // fine enough to tell 10,000 pods' bytes apart
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	// BENCH_MEMORY_CPUPROFILE=<prefix>: the child's CPU profile, to
	// <prefix>.<variant>.<pods> (where its steady plans' time goes).
	if p := os.Getenv("BENCH_MEMORY_CPUPROFILE"); p != "" {
		f, err := os.Create(p + "." + args[0] + "." + args[1])
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	var r childResult
	var keep any
	switch args[0] {
	case "rollbook", "idle", "rolled", "finished", "rerolled":
		ctl.CatchUpGC() // as rollbook run does at its start
		keep, r.Actions, err = rollbookHolds(n, args[0])
	case "informer":
		keep, err = informerHolds(n)
	default:
		err = fmt.Errorf("unknown variant %q", args[0])
	}
	if err != nil {
		return err
	}
	r.SteadyCycles = gcCycles() - steadyStart // before snapshot's and settle's own collections
	h := snapshot()
	r.HeapUnused = float64(heapSamples[2].Value.Uint64()) // read by snapshot
	settle()
	if h.RSS, err = procStatusKB(os.Getpid(), "VmRSS"); err != nil {
		return err
	}
	h.RSS *= 1024
	r.Settled = readSettled()
	for _, f := range []struct {
		name string
		to   *float64
	}{{"RssAnon", &r.Anon}, {"RssFile", &r.File}} {
		kb, err := procStatusKB(os.Getpid(), f.name)
		if err != nil {
			return err
		}
		*f.to = float64(kb * 1024)
	}
	hwm, err := procStatusKB(os.Getpid(), "VmHWM")
	if err != nil {
		return err
	}
	r.HeapLive, r.RSS, r.HWM, r.CatchUpHWM = float64(h.Live), float64(h.RSS), float64(hwm*1024), float64(catchUpPeak)
	r.SteadyPlans, r.SteadyPlanNs = steadyPlans, steadyPlanTime.Nanoseconds()
	if p := os.Getenv("BENCH_MEMORY_HEAPPROFILE"); p != "" {
		if err := writeHeapProfile(p + "." + args[0] + "." + args[1]); err != nil {
			return err
		}
	}
	if b, ok := keep.([]any); ok && n > 0 {
		// After the snapshot: what it allocates is not in the figures above.
		if r.Encoded, err = encodedIdleOf(b[0].(*projections.Books).State); err != nil {
			return err
		}
	}
	runtime.KeepAlive(keep)
	r.Pods = n
	return json.NewEncoder(os.Stdout).Encode(r)
}

// catchUpPeak is the peak RSS (VmHWM, bytes) before resetPeak.
var catchUpPeak uint64

// steadyPlans and steadyPlanTime count the plans of the steady updates.
var (
	steadyPlans    int
	steadyPlanTime time.Duration
)

// resetPeak keeps the peak RSS so far as catchUpPeak and starts the
// kernel's count of it (VmHWM) again from the RSS now (clear_refs 5).
func resetPeak() error {
	hwm, err := procStatusKB(os.Getpid(), "VmHWM")
	if err != nil {
		return err
	}
	catchUpPeak = hwm * 1024
	steadyStart = gcCycles()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// settledClasses are the runtime's memory classes memoryChild reports.
type settledClasses struct{ Objects, Unused, Free, Metadata float64 }

func readSettled() settledClasses {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/metadata/mspan/inuse:bytes"},
		{Name: "/memory/classes/metadata/mspan/free:bytes"}, {Name: "/memory/classes/metadata/mcache/inuse:bytes"},
		{Name: "/memory/classes/metadata/mcache/free:bytes"}, {Name: "/memory/classes/metadata/other:bytes"}}
	metrics.Read(s)
	v := func(i int) float64 { return float64(s[i].Value.Uint64()) }
	return settledClasses{Objects: v(0), Unused: v(1), Free: v(2), Metadata: v(3) + v(4) + v(5) + v(6) + v(7)}
}

// settle waits, for at most a minute, until the runtime's background
// scavenger has returned what it will of the free heap to the OS (the
// bytes it released grew by less than 64 KiB in the last two seconds): the
// RSS of a process that has run a while, not of the instant after a burst
// of garbage, which the runtime gives back over the next seconds.
func settle() {
	s := []metrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	released := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	deadline := time.Now().Add(time.Minute)
	for last := released(); time.Now().Before(deadline); {
		time.Sleep(2 * time.Second)
		now := released()
		if now < last+64<<10 {
			return
		}
		last = now
	}
}

// watchedPod is pod i as a watch delivers it: a barePod with its running
// status, identity and version, as JSON.
func watchedPod(i int) []byte { return watchedPodAt(i, 0, false) }

// watchedPodAt is pod i's v-th update since it was listed: a new
// resourceVersion, its container restarted v times (a status update, as a
// kubelet's). A rolled pod is one a finished rollout updated in place
// (rolledPod).
func watchedPodAt(i, v int, rolled bool) []byte {
	name := barePodName(i)
	p := barePod(i)
	p.Namespace = benchNS
	p.UID = types.UID(fmt.Sprintf("6c3c624b-58db-4bcd-%04x-%012x", i%65536, i))
	p.ResourceVersion = strconv.Itoa(100000 + i + v*1_000_000_000)
	p.CreationTimestamp = metav1.NewTime(time.Unix(1_800_000_000, 0))
	// Its StatefulSet, as on every such pod (barePod has none: on a real
	// apiserver the garbage collector would delete a pod whose owner does
	// not exist).
	yes := true
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "bench", UID: "5a1f0c2e-7b8d-4e3f-9a6b-1c2d3e4f5a6b", Controller: &yes, BlockOwnerDeletion: &yes}}
	p.Spec.NodeName = fmt.Sprintf("node-%03d", i%100)
	p.Status = runningStatus(name, i)
	if rolled {
		rolledPod(p, i)
	}
	for c := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[c].RestartCount += int32(v)
	}
	p.Kind, p.APIVersion = "Pod", "v1"
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

// rolledPod makes p, pod i, a pod the last rollout updated in place and
// verified: its app container runs the new image in a new container, its
// revision label is the target's, and it carries the state annotation the
// patch wrote (planner: what the patch replaced, for verify and rollback),
// as every pod Rollbook has updated does until the next rollout's patch.
func rolledPod(p *corev1.Pod, i int) {
	const target = "web-6f9d8c7b5e"
	app := &p.Status.ContainerStatuses[0]
	st := projections.NewPodState(benchNS+"/web-v2", target, p.Labels["controller-revision-hash"], 1_800_000_000e9+int64(i/100)*1e8,
		[]projections.ContainerBefore{{Name: app.Name, Image: app.Image, ImageID: app.ImageID, ContainerID: projections.ParseContainerID(app.ContainerID), Restarts: app.RestartCount}})
	raw, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	p.Annotations[projections.StateAnnotation] = string(raw)
	p.Labels["controller-revision-hash"] = target
	p.Spec.Containers[0].Image = "registry.example/app:v2"
	app.Image = "registry.example/app:v2"
	app.ImageID = "registry.example/app@sha256:0f5e2a9c7d4b8e1f3a6c9d2b5e8f1a4c7d0b3e6f9a2c5d8b1e4f7a0c3d6b9e2f"
	app.ContainerID = fmt.Sprintf("containerd://%064x", 1<<40+i)
}

// rollbookHolds is the controller's memory of n pods, by mode:
//   - "rollbook": under a rollout over every pod, its first;
//   - "idle": between rollouts, never rolled;
//   - "rolled": between rollouts, each pod updated in place by the last
//     one (rolledPod);
//   - "finished": rolled, with the rollout that updated them still there,
//     Succeeded, as a rollout stays until it is deleted: the planner
//     keeps its claims and its pods' classifications;
//   - "rerolled": under a rollout over every pod of a rolled fleet, what
//     every rollout after a fleet's first is.
func rollbookHolds(n int, mode string) (any, int, error) {
	rollout := mode == "rollbook" || mode == "rerolled" || mode == "finished"
	rolled := mode == "rolled" || mode == "rerolled" || mode == "finished"
	name, image := "web-v2", "registry.example/app:v2"
	if mode == "rerolled" {
		name, image = "web-v3", "registry.example/app:v3" // the rolled pods run web-v2's v2
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "rollbook-bench-memory-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	j, err := journal.Open(dir, journal.Options{Logger: quiet})
	if err != nil {
		return nil, 0, err
	}
	defer j.Close()
	newIngester := func() (*ingest.Ingester, error) {
		return ingest.New(ingest.Options{
			Client: dynamic.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}), Journal: j,
			Resources: []ingest.Resource{ingest.Pods}, Namespaces: []string{benchNS}, Logger: quiet,
		})
	}
	in, err := newIngester()
	if err != nil {
		return nil, 0, err
	}
	books := projections.NewBooks()
	fold := func(recs []journal.Record) error {
		for _, r := range recs {
			if err := books.Apply(r); err != nil {
				return err
			}
		}
		return nil
	}
	// intend journals a plan's actions as the controller does, all its
	// intents in one append before any is carried out, and folds them: an
	// action in flight is then pending, and no plan derives it again
	// until its outcome is journaled, which here never comes (no
	// apiserver). The fold holds what the controller holds of each action
	// in flight (its open intent, its pending entry).
	act, err := actuator.New(actuator.Options{Config: &rest.Config{Host: "https://127.0.0.1:1"}, Journal: j, Logger: quiet})
	if err != nil {
		return nil, 0, err
	}
	intend := func(acts []planner.Action) error {
		if len(acts) == 0 {
			return nil
		}
		if _, _, err := act.Intend(ctx, acts, books.State.Seq); err != nil {
			return err
		}
		return j.Read(ctx, books.State.Seq+1, books.Apply)
	}
	const batch = 512
	entries := make([]journal.Entry, 0, batch)
	flush := func() error {
		if len(entries) == 0 {
			return nil
		}
		recs, err := j.Append(ctx, nil, entries...)
		if err != nil {
			return err
		}
		entries = entries[:0]
		return fold(recs)
	}
	// observe journals pod i's v-th version, as ingest would.
	observe := func(i, v int) error {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(watchedPodAt(i, v, rolled)); err != nil {
			return err
		}
		o, err := ingest.Compact(ingest.Pods, u)
		if err != nil {
			return err
		}
		body, err := journal.EncodeBody(&o)
		if err != nil {
			return err
		}
		entries = append(entries, journal.Entry{Kind: journal.KindObserved, Key: ingest.Key(o.Resource, o.Namespace, o.Name), Body: body})
		if len(entries) == batch {
			return flush()
		}
		return nil
	}
	for i := range n {
		if err := observe(i, 0); err != nil {
			return nil, 0, err
		}
	}
	// One rollout over every pod (none between rollouts), and a tick: the
	// state a plan reads.
	if rollout {
		spec, _ := json.Marshal(map[string]any{
			"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]string{"app": "web"}}},
			"containers": []map[string]any{{"name": "app", "image": image}},
			"strategy":   map[string]any{"maxUnavailable": "10%"},
		})
		ro := journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: benchNS, Name: name, UID: "rollout-uid", ResourceVersion: "1", Generation: 1, Created: 1, Spec: spec}
		if mode == "finished" {
			// As the watch shows it once its last status write is done:
			// the planner keeps less for a rollout that is over.
			ro.Status = []byte(`{"phase":"Succeeded","observedGeneration":1}`)
		}
		body, err := journal.EncodeBody(&ro)
		if err != nil {
			return nil, 0, err
		}
		entries = append(entries, journal.Entry{Kind: journal.KindObserved, Key: ingest.Key(ro.Resource, ro.Namespace, ro.Name), Body: body})
	}
	entries = append(entries, journal.Entry{Kind: journal.KindTick, Key: "tick", Body: mustEncodeBody(journal.TickFact{Reason: "plan"})})
	if err := flush(); err != nil {
		return nil, 0, err
	}
	known := make(map[string]ingest.KnownObject, len(books.State.Pods))
	for _, p := range books.State.Pods {
		known[ingest.Key("pods", p.Namespace, p.Name)] = ingest.KnownObject{UID: p.UID.String(), ResourceVersion: p.ResourceVersion.String()}
	}
	in.SeedKnown(books.State.Seq, known)
	if len(books.State.Pods) != n {
		return nil, 0, fmt.Errorf("folded %d pods of %d", len(books.State.Pods), n)
	}
	// The controller's planner, kept as the controller keeps it: its
	// caches (each rollout's last plan, claims, pods' classifications)
	// are memory the controller holds per pod too.
	inc := planner.NewIncremental()
	books.State.Track() // as the controller does: what the next records touch is planned again
	res := inc.Plan(books.State, nil)
	if mode == "finished" {
		for _, a := range res.Actions {
			if a.Pod != "" {
				return nil, 0, fmt.Errorf("a finished rollout plans a %s of %s", a.Kind, a.Pod)
			}
		}
	} else if rollout && n > 0 && len(res.Actions) == 0 {
		return nil, 0, errors.New("the plan has no action")
	}
	if !rollout && len(res.Actions) != 0 {
		return nil, 0, fmt.Errorf("a plan without a rollout has %d actions", len(res.Actions))
	}
	if err := intend(res.Actions); err != nil {
		return nil, 0, err
	}
	// Caught up: the controller sets its steady GC target here. Then the
	// steady state: updates of a third of the pods, folded and planned as
	// the controller's loop does (a plan per 512 records), so that the
	// collector cycles at that target several times before RSS is read.
	ctl.SteadyGC(0, ctl.SteadyGCRoom) // for the rest of this process's life, as the controller does
	// The controller's watch passes the newest version on record with its
	// first event or bookmark after the catch-up, and its ingester lets
	// the known set go (ingest.Options.Reload): from then on it holds
	// nothing per pod until a list. Here: an ingester with nothing held.
	if in, err = newIngester(); err != nil {
		return nil, 0, err
	}
	if err := resetPeak(); err != nil {
		return nil, 0, err
	}
	if err := churn(n, func(i int) error {
		if err := observe(i, 1); err != nil {
			return err
		}
		if len(entries) == 0 { // a batch was appended and folded: plan, as the loop would
			start := time.Now()
			res := inc.Plan(books.State, books.State.TakeTouched())
			steadyPlans, steadyPlanTime = steadyPlans+1, steadyPlanTime+time.Since(start)
			if inc.Full > 1 {
				return errors.New("a plan of the steady updates planned everything")
			}
			return intend(res.Actions)
		}
		return nil
	}); err != nil {
		return nil, 0, err
	}
	// Then, until the collector has cycled steadyCycles times since the
	// reset, what a controller does with an event that changes nothing it
	// keeps: decode it and let it go (untilCycles).
	if err := untilCycles(func() error {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(watchedPodAt(0, 1, rolled)); err != nil {
			return err
		}
		_, err := ingest.Compact(ingest.Pods, u)
		return err
	}); err != nil {
		return nil, 0, err
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	if err := intend(inc.Plan(books.State, books.State.TakeTouched()).Actions); err != nil {
		return nil, 0, err
	}
	return []any{books, in, j, inc}, len(res.Actions), nil
}

// churn calls update with a third of the n pods, spread over the fleet:
// the updates a fleet's steady state brings between two measurements.
func churn(n int, update func(i int) error) error {
	for k := range n / 3 {
		if err := update(3 * k); err != nil {
			return err
		}
	}
	return nil
}

// steadyCycles is how many times the collector must have cycled through
// the steady phase (from resetPeak) before its peak is read.
//
// A controller's steady state is long: its heap grows to the collector's
// target between collections again and again, whatever the fleet, and
// that is the peak it holds. The steady updates are a third of the
// fleet's pods, so their count, and the cycles they make, grow with the
// fleet: at 0 pods there were none, and that process's steady peak was
// its RSS at the reset, not the target's (live heap + the 16 MiB floor)
// that an idle controller reaches. Every size then subtracted too little
// at 0 pods. At 10,000 pods the updates alone make about 17 cycles.
const steadyCycles = 16

// gcCycles is how many times the collector has cycled in this process.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// steadyStart is gcCycles at resetPeak.
var steadyStart uint64

// untilCycles calls idle until the collector has cycled steadyCycles
// times since resetPeak. idle makes garbage only, as a process does with
// the events that change nothing it keeps (a pod's or a node's status
// heartbeat): it journals nothing, so Pebble's memtables are not filled
// by it. A fleet's own updates may have made the cycles already.
func untilCycles(idle func() error) error {
	for gcCycles()-steadyStart < steadyCycles {
		if err := idle(); err != nil {
			return err
		}
	}
	return nil
}

func mustEncodeBody(v any) []byte {
	b, err := journal.EncodeBody(v)
	if err != nil {
		panic(err)
	}
	return b
}

func informerHolds(n int) (any, error) {
	store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for i := range n {
		p := &corev1.Pod{}
		if err := json.Unmarshal(watchedPod(i), p); err != nil {
			return nil, err
		}
		if err := store.Add(p); err != nil {
			return nil, err
		}
	}
	if len(store.ListKeys()) != n {
		return nil, fmt.Errorf("store holds %d pods of %d", len(store.ListKeys()), n)
	}
	// The same steady updates, at Go's default GC target (or --gogc).
	if err := resetPeak(); err != nil {
		return nil, err
	}
	err := churn(n, func(i int) error {
		p := &corev1.Pod{}
		if err := json.Unmarshal(watchedPodAt(i, 1, false), p); err != nil {
			return err
		}
		return store.Update(p)
	})
	if err == nil {
		// Idle, it decodes events it lets go, until the collector has
		// cycled as often.
		err = untilCycles(func() error { return json.Unmarshal(watchedPodAt(0, 1, false), &corev1.Pod{}) })
	}
	return store, err
}
