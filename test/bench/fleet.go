package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// fleetCmd is the control run for the simulated kubelets, with no Rollbook
// at all: on one control plane, for each simulator in turn, N pods in
// StatefulSets go Ready, then the bench itself patches every pod's app
// image at a fixed rate and measures, from its own watch, how long after
// each patch the pod shows the container restarted (the new imageID,
// ready, the pod Ready), against the delay the simulator is configured
// with. A simulator that keeps up gives latencies near that delay at every
// percentile; one that does not gives a backlog that grows through the run.
func fleetCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("fleet")
	o := fleetOpts{}
	fs.IntVar(&o.Pods, "pods", 10000, "pods in total, per simulator")
	nodes := fs.Int("nodes", 100, "simulated nodes (3 zones)")
	fs.IntVar(&o.StsSize, "sts-size", 1000, "pods per StatefulSet")
	kinds := fs.String("fleet", "kwok,lean", "the simulators to measure, one after the other on one control plane")
	fs.Float64Var(&o.Rate, "rate", 50, "image patches per second")
	fs.IntVar(&o.Writers, "parallelism", 16, "parallel patch writers")
	fs.DurationVar(&o.Delay, "image-change-delay", 200*time.Millisecond, "the simulators' configured restart delay")
	fs.IntVar(&o.FleetWorkers, "fleet-parallelism", 16, "kwok's pod stage workers; the lean kubelet's workers")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", 20*time.Minute, "bound on creating the pods and their becoming Ready")
	fs.DurationVar(&o.Timeout, "timeout", 20*time.Minute, "bound on every pod restarting after the last patch was sent")
	keep := fs.Bool("keep", false, "keep the work directory (logs)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.Pods <= 0 || o.StsSize <= 0 || *nodes <= 0 || o.Rate <= 0 || o.Writers <= 0 {
		return nil, errors.New("bench: --pods, --sts-size, --nodes, --rate and --parallelism must be positive")
	}
	var order []string
	for k := range strings.SplitSeq(*kinds, ",") {
		if k = strings.TrimSpace(k); k != fleet.Kwok && k != fleet.Lean {
			return nil, fmt.Errorf("bench: --fleet %q: want kwok, lean or both, comma-separated", *kinds)
		}
		order = append(order, k)
	}
	root, cleanup, err := env.workDir("fleet", *keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	env.logf("starting a local control plane")
	c, err := cluster.Start(ctx, benchCluster(cluster.Options{Dir: filepath.Join(root, "cluster"), Progress: env.progress}))
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	var runs []*fleetRun
	for _, kind := range order {
		r, err := fleetPhase(ctx, env, c, kind, *nodes, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		runs = append(runs, r)
	}

	fmt.Printf("\nfleet: %d pods per simulator in StatefulSets of ≤%d (2 containers, no readiness gate) on %d nodes (3 zones); the bench patches every pod's app image at %.0f/s with %d writers; configured restart delay %s; %s, one after the other on one control plane\n",
		o.Pods, o.StsSize, *nodes, o.Rate, o.Writers, o.Delay, strings.Join(order, " then "))
	printMachine(env)
	summary := map[string]any{"pods": o.Pods, "nodes": *nodes, "rate": o.Rate, "writers": o.Writers, "delay_s": o.Delay.Seconds()}
	for _, r := range runs {
		r.print(o)
		summary[r.Kind] = r.summary()
	}
	if len(runs) == 2 {
		a, b := runs[0], runs[1]
		ratio := func(x, y float64) float64 {
			if y == 0 {
				return 0
			}
			return round(x/y, 2)
		}
		fmt.Printf("  %s ÷ %s: restart latency median %.2f×, p99 %.2f×; CPU-seconds %.2f× (during the patches), %.2f× (setup); peak RSS %.2f×\n",
			a.Kind, b.Kind, ratio(a.Median.Seconds(), b.Median.Seconds()), ratio(a.P99.Seconds(), b.P99.Seconds()),
			ratio(a.CPUPatch, b.CPUPatch), ratio(a.CPUSetup, b.CPUSetup), ratio(float64(a.PeakKiB), float64(b.PeakKiB)))
		summary["ratio_"+a.Kind+"_over_"+b.Kind] = map[string]float64{
			"median": ratio(a.Median.Seconds(), b.Median.Seconds()), "p99": ratio(a.P99.Seconds(), b.P99.Seconds()),
			"cpu_patch": ratio(a.CPUPatch, b.CPUPatch), "cpu_setup": ratio(a.CPUSetup, b.CPUSetup),
			"peak_rss": ratio(float64(a.PeakKiB), float64(b.PeakKiB)),
		}
	}
	return summary, nil
}

type fleetOpts struct {
	Pods, StsSize, Writers, FleetWorkers int
	Rate                                 float64
	Delay, ReadyTimeout, Timeout         time.Duration
}

// fleetRun is one simulator's figures.
type fleetRun struct {
	Kind                      string
	Load                      [2]string // load average at the start and end of its patches
	Setup, Patching, Draining time.Duration
	Restarted, Missing        int
	// From each patch's return to the first watch event showing the pod
	// restarted; Sent is from before the request went out.
	Median, P90, P99, Max time.Duration
	SentMedian            time.Duration
	CPUSetup, CPUPatch    float64 // the simulator's CPU-seconds
	APICPUPatch           float64 // kube-apiserver's during the patches
	PeakKiB               uint64  // the simulator's VmHWM
	Notes                 string  // lean: its own counters
}

func (r *fleetRun) print(o fleetOpts) {
	fmt.Printf("  %s (load %s → %s):\n", r.Kind, r.Load[0], r.Load[1])
	fmt.Printf("    setup: %d pods created and Ready in %s\n", o.Pods, r.Setup.Round(time.Second))
	fmt.Printf("    %d patches sent in %s (%.1f/s); the last restart seen %s after the last patch returned\n",
		o.Pods, r.Patching.Round(100*time.Millisecond), float64(o.Pods)/r.Patching.Seconds(), r.Draining.Round(100*time.Millisecond))
	fmt.Printf("    patch → restarted and Ready (configured %s): median %s, p90 %s, p99 %s, max %s (from the request sent: median %s); %d of %d restarted, %d missing\n",
		o.Delay, r.Median.Round(time.Millisecond), r.P90.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond),
		r.SentMedian.Round(time.Millisecond), r.Restarted, o.Pods, r.Missing)
	fmt.Printf("    %s CPU-seconds: %.1f during setup, %.1f during the patches (%.1f ms per restart); kube-apiserver %.1f during the patches; %s peak RSS %.1f MiB\n",
		r.Kind, r.CPUSetup, r.CPUPatch, 1000*r.CPUPatch/float64(max(r.Restarted, 1)), r.APICPUPatch, r.Kind, float64(r.PeakKiB)/1024)
	if r.Notes != "" {
		fmt.Printf("    %s\n", r.Notes)
	}
}

func (r *fleetRun) summary() map[string]any {
	return map[string]any{
		"setup_s": round(r.Setup.Seconds(), 1), "patching_s": round(r.Patching.Seconds(), 1), "draining_s": round(r.Draining.Seconds(), 1),
		"restarted": r.Restarted, "missing": r.Missing,
		"latency_s":    map[string]float64{"median": round(r.Median.Seconds(), 3), "p90": round(r.P90.Seconds(), 3), "p99": round(r.P99.Seconds(), 3), "max": round(r.Max.Seconds(), 3)},
		"cpu_s":        map[string]float64{"setup": round(r.CPUSetup, 1), "patches": round(r.CPUPatch, 1), "apiserver_patches": round(r.APICPUPatch, 1)},
		"peak_rss_mib": round(float64(r.PeakKiB)/1024, 1), "load": r.Load, "notes": r.Notes,
	}
}

// fleetPhase measures one simulator: it starts it, makes the nodes and pods
// Ready, patches and measures, then deletes the pods and stops it, so the
// next simulator starts on the same nodes with no pods.
func fleetPhase(ctx context.Context, env *benchEnv, c *cluster.Cluster, kind string, nodes int, o fleetOpts) (*fleetRun, error) {
	cs := c.Clientset()
	ns := "fleet-" + kind
	r := &fleetRun{Kind: kind}
	env.logf("%s: starting it and %d nodes", kind, nodes)
	fl, err := fleet.Start(ctx, c, fleet.Options{Kind: kind, Progress: env.progress, Parallelism: o.FleetWorkers, ImageChangeDelay: o.Delay})
	if err != nil {
		return nil, err
	}
	defer fl.Stop()
	pid := fl.Process().Pid()
	if _, err := fleet.CreateNodes(ctx, cs, nodes, fleet.Zones); err != nil {
		return nil, err
	}
	if err := createNamespace(ctx, cs, ns); err != nil {
		return nil, err
	}

	// The pods: StatefulSets as the rollout bench makes them, without the
	// gate (no controller here sets it).
	cpu0 := procCPU(pid)
	readyStart := time.Now()
	var names []string
	for left, i := o.Pods, 0; left > 0; i++ {
		n := min(left, o.StsSize)
		sts := benchStatefulSet(fmt.Sprintf("web-%02d", i), int32(n))
		sts.Spec.Template.Spec.ReadinessGates = nil
		if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		names = append(names, sts.Name)
		left -= n
	}
	env.logf("%s: %d StatefulSets (%d pods) created, waiting until Ready", kind, len(names), o.Pods)
	if err := waitFor(ctx, env, o.ReadyTimeout, kind+": pods Ready", func() (int, int, error) {
		if err := fl.Healthy(); err != nil {
			return 0, 0, err
		}
		list, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, 0, err
		}
		ready := 0
		for _, s := range list.Items {
			ready += int(s.Status.ReadyReplicas)
		}
		return ready, o.Pods, nil
	}); err != nil {
		return nil, err
	}
	r.Setup = time.Since(readyStart)
	r.CPUSetup = procCPU(pid) - cpu0
	env.logf("%s: %d pods Ready in %s", kind, o.Pods, r.Setup.Round(time.Second))
	pods, err := listPods(ctx, cs, ns)
	if err != nil {
		return nil, err
	}

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w, err := watchRestarts(wctx, c, ns, "app", fleet.ImageID(imageV2App))
	if err != nil {
		return nil, err
	}
	r.Load[0] = loadAvg()
	api := c.Process("kube-apiserver").Pid()
	cpu1, api1 := procCPU(pid), procCPU(api)
	env.logf("%s: patching %d pods' app image at %.0f/s (%d writers)", kind, len(pods), o.Rate, o.Writers)
	p, err := patchImages(ctx, c, pods, o.Rate, o.Writers)
	if err != nil {
		return nil, err
	}
	r.Patching = p.last.Sub(p.first)
	err = waitFor(ctx, env, o.Timeout, kind+": pods restarted", func() (int, int, error) {
		if err := fl.Healthy(); err != nil {
			return 0, 0, err
		}
		return int(w.count.Load()), len(pods), nil
	})
	cpu2, api2 := procCPU(pid), procCPU(api)
	r.Load[1] = loadAvg()
	stopWatch()
	<-w.done
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	if err != nil {
		env.logf("%s: %v (counted as missing)", kind, err)
	}
	r.CPUPatch, r.APICPUPatch = cpu2-cpu1, api2-api1
	r.PeakKiB, _ = procStatusKB(pid, "VmHWM")
	var lat, sent []time.Duration
	var lastSeen time.Time
	for name, at := range w.seen {
		done, ok := p.returned[name]
		if !ok {
			continue
		}
		lat = append(lat, at.Sub(done))
		sent = append(sent, at.Sub(p.sent[name]))
		if at.After(lastSeen) {
			lastSeen = at
		}
	}
	r.Restarted, r.Missing = len(lat), len(pods)-len(lat)
	r.Draining = lastSeen.Sub(p.last)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.Median, r.P90, r.P99 = pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	r.SentMedian = median(sent)
	if kind == fleet.Lean {
		if st, err := fl.LeanStats(ctx); err == nil {
			r.Notes = fmt.Sprintf("lean kubelet's counters over its life: %d status patches, %d refused as stale (409), %d other errors, %d deletes, %d node patches, %d lease renewals",
				st.StatusPatches, st.Conflicts, st.Errors, st.Deletes, st.NodePatches, st.LeaseRenewals)
		}
	}
	env.logf("%s: restart latency median %s, p99 %s; %.1f CPU-s", kind, r.Median.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.CPUPatch)

	// Clean up for the next simulator: the StatefulSets go without their
	// pods, which are deleted at once (grace 0) with the simulator still
	// running, so nothing is left for the next one to finish.
	env.logf("%s: deleting the pods", kind)
	orphan := metav1.DeletePropagationOrphan
	for _, n := range names {
		if err := cs.AppsV1().StatefulSets(ns).Delete(ctx, n, metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
			return nil, err
		}
	}
	// Deletes that time out on a busy apiserver are tried again on the
	// pods still there, a few rounds.
	left := pods
	for round := 0; len(left) > 0; round++ {
		if round == 5 {
			return nil, fmt.Errorf("%d pods left after %d rounds of deletes", len(left), round)
		}
		if err := deletePods(ctx, c, left); err != nil {
			env.logf("%s: %v; deleting again", kind, err)
		}
		if left, err = listPods(ctx, cs, ns); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// deletePods deletes pods with grace 0, one request each over parallel
// workers. NB: not a collection delete: the apiserver works through one
// with a single worker (--delete-collection-workers), about 30 pods a
// second here, and stops where it is when the request times out.
func deletePods(ctx context.Context, c *cluster.Cluster, pods []corev1.Pod) error {
	cfg := c.Config()
	cfg.QPS, cfg.Burst = 1e6, 1e6
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	work := make(chan *corev1.Pod)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for p := range work {
				err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
				if err != nil && !apierrors.IsNotFound(err) {
					if failed.Add(1) == 1 {
						firstErr.Store(err)
					}
				}
			}
		})
	}
	for i := range pods {
		work <- &pods[i]
	}
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d pod deletes failed, e.g.: %v", n, firstErr.Load())
	}
	return nil
}

const imageV2App = "registry.example/app:v2"

// pct is the q-quantile of sorted ds (nearest rank).
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

type patchTimes struct {
	sent, returned map[string]time.Time
	first, last    time.Time
}

// patchImages changes every pod's app container from app:v1 to app:v2 with
// a JSON patch that tests the old image first, paced at rate per second
// over writers parallel requests, no client-side rate limit.
func patchImages(ctx context.Context, c *cluster.Cluster, pods []corev1.Pod, rate float64, writers int) (*patchTimes, error) {
	cfg := c.Config()
	cfg.QPS, cfg.Burst = 1e6, 1e6
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pt := &patchTimes{sent: map[string]time.Time{}, returned: map[string]time.Time{}}
	var mu sync.Mutex
	var failed atomic.Int64
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	patch := `[{"op":"test","path":"/spec/containers/0/image","value":"registry.example/app:v1"},{"op":"replace","path":"/spec/containers/0/image","value":"` + imageV2App + `"}]`
	for range writers {
		wg.Go(func() {
			for name := range work {
				sent := time.Now()
				_, err := cs.CoreV1().Pods(pods[0].Namespace).Patch(ctx, name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
				done := time.Now()
				mu.Lock()
				if err != nil {
					if failed.Add(1) == 1 {
						firstErr = err
					}
				} else {
					pt.sent[name], pt.returned[name] = sent, done
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
	pt.first = start
	for i := range pods {
		// Paced from the start, not from the previous send, so a slow
		// request does not lower the rate offered.
		if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		work <- pods[i].Name
	}
	close(work)
	wg.Wait()
	pt.last = time.Now()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d image patches failed, e.g.: %w", n, firstErr)
	}
	return pt, nil
}

// restartWatch is the bench's own watch of a namespace's pods: for each
// pod, when an event first showed container restarted on imageID, ready,
// and the pod Ready.
type restartWatch struct {
	seen  map[string]time.Time // read after done is closed
	count atomic.Int64
	done  chan struct{}
}

func watchRestarts(ctx context.Context, c *cluster.Cluster, ns, container, imageID string) (*restartWatch, error) {
	cfg := c.Config()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return nil, err
	}
	rv := list.ResourceVersion
	w := &restartWatch{seen: map[string]time.Time{}, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			wi, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			for ev := range wi.ResultChan() {
				now := time.Now()
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = p.ResourceVersion
				if _, done := w.seen[p.Name]; done || !restartedOn(p, container, imageID) {
					continue
				}
				w.seen[p.Name] = now
				w.count.Add(1)
			}
			wi.Stop()
		}
	}()
	return w, nil
}

func restartedOn(p *corev1.Pod, container, imageID string) bool {
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == container {
			return ready && s.Ready && s.ImageID == imageID && s.State.Running != nil
		}
	}
	return false
}
