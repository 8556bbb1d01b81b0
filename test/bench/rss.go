package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
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

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// memoryCmd measures whole-process memory per tracked pod: each variant
// runs in a process of its own (this program, re-executed), fed the same N
// pods as a watch delivers them (JSON), and reports its peak and final
// resident set (VmHWM, VmRSS) read from /proc. The marginal cost per pod
// is (RSS at N − RSS at 0) ÷ N, both measured in the same run.
//
//   - rollbook: what the controller keeps per pod, through its own code:
//     each pod compacted by ingest (ingest.Compact), journaled in a real
//     Pebble journal (group commits of 512, fsync, as ingest appends a
//     list), folded by the controller's fold (projections.Books), ingest's
//     known set seeded from it as the controller does, then one rollout
//     over every pod planned by the controller's planner, kept
//     (planner.Incremental: its caches are per pod too).
//   - idle: the same with no rollout: a fleet the controller tracks
//     between rollouts, planned (the planner holds nothing per pod then).
//   - informer: a SharedInformer's store (cache.Indexer with the
//     namespace index) of the same pods decoded into typed corev1.Pod
//     objects, as its reflector keeps them; managedFields are absent
//     (what a well-tuned informer strips).
//
// No apiserver: the pods are made in process, so 100,000 fit on this
// machine; the HTTP and watch machinery, which does not grow with pods,
// is left out of both.
func memoryCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("memory")
	podsList := fs.String("pods", "10000,100000", "comma-separated pod counts (0 is always measured too)")
	gogc := fs.String("gogc", "", "GOGC for the child processes (default: the Go default, 100)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	counts := []int{0}
	for _, f := range strings.Split(*podsList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--pods: %q", f)
		}
		counts = append(counts, n)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	variants := []string{"rollbook", "idle", "informer"}
	results := map[string]map[int]childResult{}
	for _, v := range variants {
		results[v] = map[int]childResult{}
	}
	fmt.Printf("\nmemory: whole-process RSS per tracked pod, each variant in its own process, pods %v\n", counts)
	printMachine(env)
	for _, n := range counts {
		for _, v := range variants {
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
			results[v][n] = r
			env.logf("%-8s %7d pods: peak RSS %7.1f MiB, RSS %7.1f MiB, heap live %7.1f MiB (%s)", v, n, mib(r.HWM), mib(r.RSS), mib(r.HeapLive), time.Since(start).Round(time.Second))
		}
	}
	summary := map[string]any{}
	for _, n := range counts[1:] {
		fmt.Printf("\n  %d pods (marginal over the same variant at 0 pods):\n", n)
		per := map[string][3]float64{}
		for _, v := range variants {
			z, r := results[v][0], results[v][n]
			p := [3]float64{(r.HWM - z.HWM) / float64(n), (r.RSS - z.RSS) / float64(n), (r.HeapLive - z.HeapLive) / float64(n)}
			per[v] = p
			fmt.Printf("    %-8s peak RSS %7.1f MiB (%6.0f B/pod), RSS %7.1f MiB (%6.0f B/pod), heap live %6.0f B/pod\n", v, mib(r.HWM), p[0], mib(r.RSS), p[1], p[2])
			summary[fmt.Sprintf("%s_%d", v, n)] = map[string]any{"peak_rss_mib": mib(r.HWM), "peak_b_per_pod": round(p[0], 0), "rss_b_per_pod": round(p[1], 0), "heap_b_per_pod": round(p[2], 0)}
		}
		fmt.Printf("    informer ÷ rollbook: peak RSS per pod %.1f×, RSS per pod %.1f×, heap per pod %.1f×\n",
			per["informer"][0]/per["rollbook"][0], per["informer"][1]/per["rollbook"][1], per["informer"][2]/per["rollbook"][2])
		fmt.Printf("    a rollout over every pod costs, above the idle fleet: peak RSS %+.0f B/pod, RSS %+.0f B/pod, heap %+.0f B/pod\n",
			per["rollbook"][0]-per["idle"][0], per["rollbook"][1]-per["idle"][1], per["rollbook"][2]-per["idle"][2])
		if e := results["rollbook"][n].Encoded; e != nil {
			fmt.Printf("    held encoded instead (BENCHMARKS §1): a folded pod's record is %.0f B; decoding one takes %.1f µs, %.0f ms for all %d, which a plan reading every pod would pay\n",
				e.Bytes, e.DecodeNs/1e3, e.DecodeNs*float64(n)/1e6, n)
			fmt.Printf("    what a pod has of its own (strings no other pod has, 8 B a timestamp or counter): %.0f B\n", e.Own)
			summary[fmt.Sprintf("encoded_idle_%d", n)] = map[string]any{"bytes_per_pod": round(e.Bytes, 0), "decode_us_per_pod": round(e.DecodeNs/1e3, 2), "own_bytes_per_pod": round(e.Own, 0)}
		}
	}
	return summary, nil
}

type childResult struct {
	HWM, RSS, HeapLive float64
	Pods               int
	Actions            int
	// Encoded is what holding idle pods encoded would take instead (see
	// encodedIdle); rollbook variant only.
	Encoded *encodedIdle `json:",omitempty"`
}

// memoryChild is one measured process: memory-child <variant> <pods>.
// It prints a childResult as JSON on stdout.
func memoryChild(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: memory-child rollbook|idle|informer <pods>")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	var r childResult
	var keep any
	switch args[0] {
	case "rollbook":
		keep, r.Actions, err = rollbookHolds(n, true)
	case "idle":
		keep, r.Actions, err = rollbookHolds(n, false)
	case "informer":
		keep, err = informerHolds(n)
	default:
		err = fmt.Errorf("unknown variant %q", args[0])
	}
	if err != nil {
		return err
	}
	h := snapshot()
	hwm, err := procStatusKB(os.Getpid(), "VmHWM")
	if err != nil {
		return err
	}
	r.HeapLive, r.RSS, r.HWM = float64(h.Live), float64(h.RSS), float64(hwm*1024)
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

// watchedPod is pod i as a watch delivers it: a barePod with its running
// status, identity and version, as JSON.
func watchedPod(i int) []byte {
	name := barePodName(i)
	p := barePod(i)
	p.Namespace = benchNS
	p.UID = types.UID(fmt.Sprintf("6c3c624b-58db-4bcd-%04x-%012x", i%65536, i))
	p.ResourceVersion = strconv.Itoa(100000 + i)
	p.CreationTimestamp = metav1.NewTime(time.Unix(1_800_000_000, 0))
	// Its StatefulSet, as on every such pod (barePod has none: on a real
	// apiserver the garbage collector would delete a pod whose owner does
	// not exist).
	yes := true
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "bench", UID: "5a1f0c2e-7b8d-4e3f-9a6b-1c2d3e4f5a6b", Controller: &yes, BlockOwnerDeletion: &yes}}
	p.Spec.NodeName = fmt.Sprintf("node-%03d", i%100)
	p.Status = runningStatus(name, i)
	p.Kind, p.APIVersion = "Pod", "v1"
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

func rollbookHolds(n int, rollout bool) (any, int, error) {
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
	in, err := ingest.New(ingest.Options{
		Client: dynamic.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1"}), Journal: j,
		Resources: []ingest.Resource{ingest.Pods}, Namespaces: []string{benchNS}, Logger: quiet,
	})
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
	for i := range n {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(watchedPod(i)); err != nil {
			return nil, 0, err
		}
		o, err := ingest.Compact(ingest.Pods, u)
		if err != nil {
			return nil, 0, err
		}
		body, err := journal.EncodeBody(&o)
		if err != nil {
			return nil, 0, err
		}
		entries = append(entries, journal.Entry{Kind: journal.KindObserved, Key: ingest.Key(o.Resource, o.Namespace, o.Name), Body: body})
		if len(entries) == batch {
			if err := flush(); err != nil {
				return nil, 0, err
			}
		}
	}
	// One rollout over every pod (none for the idle variant: a fleet
	// tracked between rollouts), and a tick: the state a plan reads.
	if rollout {
		spec, _ := json.Marshal(map[string]any{
			"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]string{"app": "web"}}},
			"containers": []map[string]any{{"name": "app", "image": "registry.example/app:v2"}},
			"strategy":   map[string]any{"maxUnavailable": "10%"},
		})
		ro := journal.Observed{Resource: "inplacerollouts.rollbook.dev", Namespace: benchNS, Name: "web-v2", UID: "rollout-uid", ResourceVersion: "1", Generation: 1, Created: 1, Spec: spec}
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
		known[ingest.Key("pods", p.Namespace, p.Name)] = ingest.KnownObject{UID: p.UID, ResourceVersion: p.ResourceVersion}
	}
	in.SeedKnown(books.State.Seq, known)
	if len(books.State.Pods) != n {
		return nil, 0, fmt.Errorf("folded %d pods of %d", len(books.State.Pods), n)
	}
	// The controller's planner, kept as the controller keeps it: its
	// caches (each rollout's last plan, claims, pods' classifications)
	// are memory the controller holds per pod too.
	inc := planner.NewIncremental()
	res := inc.Plan(books.State, nil)
	if rollout && n > 0 && len(res.Actions) == 0 {
		return nil, 0, errors.New("the plan has no action")
	}
	if !rollout && len(res.Actions) != 0 {
		return nil, 0, fmt.Errorf("a plan without a rollout has %d actions", len(res.Actions))
	}
	return []any{books, in, j, inc}, len(res.Actions), nil
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
	return store, nil
}
