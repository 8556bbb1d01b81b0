package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

const benchNS = "bench"

// podCluster starts a local control plane and creates n bare pods in
// benchNS.
func podCluster(ctx context.Context, env *benchEnv, n, parallel int, status bool) (*cluster.Cluster, error) {
	env.logf("starting a local control plane")
	// No etcd compaction during the run: a resume from a compacted cursor
	// would relist (410 Gone), which is not what is measured.
	c, err := cluster.Start(ctx, benchCluster(cluster.Options{Progress: env.progress, EtcdCompactionInterval: time.Hour}))
	if err != nil {
		return nil, err
	}
	cs := c.Clientset()
	if err := createNamespace(ctx, cs, benchNS); err != nil {
		c.Stop()
		return nil, err
	}
	env.logf("creating %d bare pods (%d creators, status %v)", n, parallel, status)
	if err := createBarePods(ctx, env, cs, benchNS, n, parallel, status); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

var quiet = slog.New(slog.DiscardHandler)

var heapProfile string

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

type memResult struct {
	Tracked int
	Base    heap
	Running heap // the component running and synced
	Held    heap // only its per-object state referenced
	After   heap // everything released
	Sync    time.Duration
}

func (r memResult) perPod(h heap) float64 {
	return delta(r.Base.Live, h.Live) / float64(max(r.Tracked, 1))
}

// measureIngester runs a pods-only ingester for ns on a fresh journal until
// synced and measures the heap with it running (the whole pipeline: watch,
// decoder, journal client side), then stopped with only the Ingester (its
// known set) referenced, then released.
func measureIngester(ctx context.Context, cfg *rest.Config, ns string) (memResult, error) {
	var r memResult
	dir, err := os.MkdirTemp("", "rollbook-bench-journal-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	r.Base = snapshot()
	j, err := journal.Open(dir, journal.Options{Logger: quiet})
	if err != nil {
		return r, err
	}
	client, err := ingest.NewClient(cfg)
	if err != nil {
		j.Close()
		return r, err
	}
	in, err := ingest.New(ingest.Options{
		Client: client, Journal: j, Resources: []ingest.Resource{ingest.Pods},
		Namespaces: []string{ns}, ListMode: ingest.ListStreaming, Logger: quiet,
	})
	if err != nil {
		j.Close()
		return r, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- in.Run(rctx) }()
	if err := in.WaitSynced(ctx); err != nil {
		cancel()
		<-done
		j.Close()
		return r, err
	}
	r.Sync = time.Since(start)
	r.Running = snapshot()
	cancel()
	if err := <-done; err != nil && rctx.Err() == nil {
		j.Close()
		return r, err
	}
	if err := j.Close(); err != nil {
		return r, err
	}
	j = nil
	r.Tracked = int(in.Held()[ingest.Pods.Name()])
	r.Held = snapshot()
	if heapProfile != "" {
		if err := writeHeapProfile(heapProfile); err != nil {
			return r, err
		}
	}
	runtime.KeepAlive(in)
	in = nil
	r.After = snapshot()
	return r, nil
}

// measureInformer runs a client-go SharedInformer on pods of ns (the
// typed pods informer of a SharedInformerFactory) until synced and measures
// the heap the same way: running, then stopped with only its store
// referenced, then released. With strip, a transform drops managedFields
// before objects enter the store, as well-tuned controllers do.
func measureInformer(ctx context.Context, cfg *rest.Config, ns string, strip bool) (memResult, error) {
	var r memResult
	r.Base = snapshot()
	cs := kubernetes.NewForConfigOrDie(cfg)
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	if strip {
		if err := inf.SetTransform(func(o any) (any, error) {
			if m, err := meta.Accessor(o); err == nil {
				m.SetManagedFields(nil)
			}
			return o, nil
		}); err != nil {
			return r, err
		}
	}
	stop := make(chan struct{})
	start := time.Now()
	f.Start(stop)
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			close(stop)
			f.Shutdown()
			return r, fmt.Errorf("informer %v did not sync", typ)
		}
	}
	r.Sync = time.Since(start)
	r.Running = snapshot()
	store := inf.GetStore()
	close(stop)
	f.Shutdown()
	f, inf = nil, nil
	r.Tracked = len(store.ListKeys())
	if obj, ok, _ := store.GetByKey(ns + "/" + barePodName(0)); ok {
		if _, isPod := obj.(*corev1.Pod); !isPod {
			return r, fmt.Errorf("informer store holds %T", obj)
		}
	}
	r.Held = snapshot()
	runtime.KeepAlive(store)
	store = nil
	r.After = snapshot()
	return r, nil
}

func ingestMemoryCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("ingest-memory")
	pods := fs.Int("pods", 10000, "bare pods to create and track")
	parallel := fs.Int("parallel", 16, "parallel pod creators")
	status := fs.Bool("status", true, "also write each pod's running status (containerStatuses, conditions, IPs), as a kubelet would")
	fs.StringVar(&heapProfile, "heapprofile", "", "write a heap profile with only the stopped ingester held")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c, err := podCluster(ctx, env, *pods, *parallel, *status)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	cfg := c.Config()

	// The fixed cost of each (client, transport, connection buffers,
	// Pebble's pools), measured on an empty namespace, is subtracted for
	// the marginal figure.
	const emptyNS = "bench-empty"
	if err := createNamespace(ctx, c.Clientset(), emptyNS); err != nil {
		return nil, err
	}
	type pair struct {
		name        string
		full, empty memResult
		measure     func(ns string) (memResult, error)
	}
	runs := []*pair{
		{name: "ingest", measure: func(ns string) (memResult, error) { return measureIngester(ctx, cfg, ns) }},
		{name: "informer", measure: func(ns string) (memResult, error) { return measureInformer(ctx, cfg, ns, false) }},
		{name: "informer_stripped", measure: func(ns string) (memResult, error) { return measureInformer(ctx, cfg, ns, true) }},
	}
	// A first run on a few pods fills the process-wide caches that any
	// first use fills once (encoding/json's and CBOR's type caches, the
	// unstructured converter's field cache, structured-merge-diff's
	// reflection cache): they do not grow with pods.
	const warmNS = "bench-warm"
	if err := createNamespace(ctx, c.Clientset(), warmNS); err != nil {
		return nil, err
	}
	if err := createBarePods(ctx, env, c.Clientset(), warmNS, 20, 4, *status); err != nil {
		return nil, err
	}
	for _, p := range runs {
		env.logf("measuring %s", p.name)
		if _, err := p.measure(warmNS); err != nil {
			return nil, fmt.Errorf("%s warm-up: %w", p.name, err)
		}
		if p.empty, err = p.measure(emptyNS); err != nil {
			return nil, fmt.Errorf("%s on an empty namespace: %w", p.name, err)
		}
		if p.name == "ingest" && heapProfile != "" {
			runtime.MemProfileRate = 1
		}
		if p.full, err = p.measure(benchNS); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		if p.full.Tracked != *pods {
			return nil, fmt.Errorf("%s tracked %d pods, created %d", p.name, p.full.Tracked, *pods)
		}
	}
	ing, inf, infStrip := runs[0], runs[1], runs[2]

	// marginal is the bytes per pod of a snapshot beyond the fixed cost.
	marginal := func(p *pair, pick func(memResult) heap) float64 {
		full := delta(p.full.Base.Live, pick(p.full).Live)
		fixed := delta(p.empty.Base.Live, pick(p.empty).Live)
		return (full - fixed) / float64(*pods)
	}
	running := func(r memResult) heap { return r.Running }
	held := func(r memResult) heap { return r.Held }

	fmt.Printf("\ningest-memory: %d pods (status written: %v), live heap after 2×GC, bytes per tracked pod\n", *pods, *status)
	printMachine(env)
	for _, p := range runs {
		r := p.full
		fmt.Printf("  %-18s running %6.0f B/pod (marginal %6.0f; heap in use %6.0f; RSS %+6.1f MiB)   only its state held %6.0f B/pod (marginal %6.0f)   fixed cost %5.2f MiB   synced in %s\n",
			p.name, r.perPod(r.Running), marginal(p, running), delta(r.Base.InUse, r.Running.InUse)/float64(r.Tracked),
			mib(delta(r.Base.RSS, r.Running.RSS)), r.perPod(r.Held), marginal(p, held),
			mib(delta(p.empty.Base.Live, p.empty.Running.Live)), r.Sync.Round(time.Millisecond))
	}
	ratio := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return round(a/b, 1)
	}
	ratios := map[string]float64{}
	for _, p := range runs[1:] {
		ratios[p.name+"_running"] = ratio(p.full.perPod(p.full.Running), ing.full.perPod(ing.full.Running))
		ratios[p.name+"_held"] = ratio(p.full.perPod(p.full.Held), ing.full.perPod(ing.full.Held))
		ratios[p.name+"_running_marginal"] = ratio(marginal(p, running), marginal(ing, running))
		ratios[p.name+"_held_marginal"] = ratio(marginal(p, held), marginal(ing, held))
		fmt.Printf("  ratio %s ÷ ingest: running %.1f× (marginal %.1f×), state held %.1f× (marginal %.1f×)   goal ≥ 10×\n", p.name,
			ratios[p.name+"_running"], ratios[p.name+"_running_marginal"], ratios[p.name+"_held"], ratios[p.name+"_held_marginal"])
	}
	fmt.Println("  (running: the component live and synced; state held: stopped, only the ingester (its known set) or the informer's store referenced;")
	fmt.Println("   Pebble's memtable and block cache are C allocations under cgo, outside the Go heap: the RSS column shows them)")
	sum := func(p *pair) map[string]any {
		r := p.full
		return map[string]any{
			"running_bytes_per_pod":  round(r.perPod(r.Running), 0),
			"running_marginal":       round(marginal(p, running), 0),
			"held_bytes_per_pod":     round(r.perPod(r.Held), 0),
			"held_marginal":          round(marginal(p, held), 0),
			"heap_inuse_per_pod":     round(delta(r.Base.InUse, r.Running.InUse)/float64(r.Tracked), 0),
			"rss_delta_mib":          mib(delta(r.Base.RSS, r.Running.RSS)),
			"fixed_mib":              mib(delta(p.empty.Base.Live, p.empty.Running.Live)),
			"sync_seconds":           round(r.Sync.Seconds(), 3),
			"not_released_after_mib": mib(delta(r.Base.Live, r.After.Live)),
		}
	}
	return map[string]any{
		"pods": *pods, "status": *status,
		"ingest": sum(ing), "informer": sum(inf), "informer_stripped": sum(infStrip),
		"ratios": ratios,
	}, nil
}
