package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// OpenKruise v1.9.0 on a kwok fleet here (GROUND.md, "The bar"), quoted
// for a quick reference; `compare` measures it in the same run.
const (
	kruisePodsPerSec   = 6.8
	kruiseWritesPerPod = 4.4
)

func rolloutCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("rollout")
	pods := fs.Int("pods", 10000, "pods in total")
	nodes := fs.Int("nodes", 100, "simulated nodes (3 zones)")
	stsSize := fs.Int("sts-size", 1000, "pods per StatefulSet (one InPlaceRollout each)")
	maxUnavailable := fs.String("max-unavailable", "10%", "each rollout's maxUnavailable")
	grace := fs.Int("grace", 0, "each rollout's gracePeriodSeconds")
	capSeconds := fs.Duration("capacity-time", 10*time.Second, "how long each write-capacity loop runs")
	capWorkers := fs.Int("capacity-workers", 16, "parallel writers of the write-capacity loop")
	capMax := fs.Int("capacity-max", 20000, "most writes of one write-capacity loop")
	qps := fs.Int("kube-api-qps", 0, "the controller's --kube-api-qps (0: its shipped default)")
	burst := fs.Int("kube-api-burst", 0, "the controller's --kube-api-burst (0: its shipped default)")
	workers := fs.Int("workers", 0, "the controller's --workers (0: its shipped default)")
	asAdmin := fs.Bool("as-admin", false, "run the controller as the cluster's admin (exempt from API Priority and Fairness) instead of its ServiceAccount under deploy/rbac.yaml")
	withNATS := fs.Bool("nats", false, "run the controller with its embedded NATS outbox (default --no-nats)")
	binary := fs.String("binary", "", "a built rollbook binary (default: go build ./cmd/rollbook)")
	kwokWorkers := fs.Int("kwok-parallelism", 16, "kwok's pod stage workers (the lean kubelet's workers with --fleet lean)")
	fleetKind := fs.String("fleet", fleet.Kwok, "the simulated kubelets: kwok or lean")
	readyTimeout := fs.Duration("ready-timeout", 20*time.Minute, "bound on creating the pods and their becoming Ready")
	timeout := fs.Duration("timeout", 20*time.Minute, "bound on the rollout")
	keep := fs.Bool("keep", false, "keep the work directory (logs, journal)")
	profile := fs.String("controller-profile", "", "write a CPU profile of the controller (rollbook run --pprof) from the template change on to this file")
	profileFor := fs.Duration("controller-profile-time", 30*time.Second, "how long the controller's CPU profile runs")
	apiProfile := fs.String("apiserver-profile", "", "write a CPU profile of kube-apiserver (run with --profiling) over the same time as --controller-profile-time, from the template change on, to this file: where the server's cores go while it is the limit")
	heapProfile := fs.String("controller-heap-profile", "", "write heap profiles of the controller (after a GC) to <this>.ready, once the pods are Ready, and <this>.done, once the rollout is over")
	extra := fs.String("controller-args", "", "more `rollbook run` flags, space-separated (e.g. \"--plan-debounce 5ms\")")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *pods <= 0 || *stsSize <= 0 || *nodes <= 0 {
		return nil, errors.New("--pods, --sts-size and --nodes must be positive")
	}
	root, cleanup, err := env.workDir("rollout", *keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	bin, err := buildRollbook(ctx, env, root, *binary)
	if err != nil {
		return nil, err
	}

	c, fl, stop, err := startGround(ctx, env, root, cluster.Options{Profiling: *apiProfile != ""}, fleet.Options{Kind: *fleetKind, Parallelism: *kwokWorkers}, *nodes)
	if err != nil {
		return nil, err
	}
	defer stop()
	cs := c.Clientset()
	if err := installRollbook(ctx, c); err != nil {
		return nil, err
	}
	if err := createNamespace(ctx, cs, benchNS); err != nil {
		return nil, err
	}
	// As shipped: the controller's own ServiceAccount, whose requests the
	// apiserver's priority and fairness limits (the admin is exempt).
	kubeconfig, identity := filepath.Join(root, "rollbook.kubeconfig"), "ServiceAccount "+rollbookSystem+"/"+rollbookSA
	if *asAdmin {
		kubeconfig, identity = c.Kubeconfig, "the admin"
	} else if err := serviceAccountKubeconfig(ctx, c, rollbookSystem, rollbookSA, kubeconfig); err != nil {
		return nil, err
	}

	ctrl, metricsURL, err := startRollbook(ctx, env, rollbookRun{
		Bin: bin, Dir: root, Kubeconfig: kubeconfig, Namespace: benchNS,
		QPS: *qps, Burst: *burst, Workers: *workers, NATS: *withNATS, Pprof: *profile != "" || *heapProfile != "", Extra: strings.Fields(*extra),
	})
	if err != nil {
		return nil, err
	}
	defer ctrl.Stop(10 * time.Second)
	hc := &http.Client{Timeout: 10 * time.Second}

	// The fleet: StatefulSets summing to pods.
	var names []string
	sizes := map[string]int32{}
	for left, i := *pods, 0; left > 0; i++ {
		n := min(left, *stsSize)
		name := fmt.Sprintf("web-%02d", i)
		names = append(names, name)
		sizes[name] = int32(n)
		left -= n
	}
	env.logf("creating %d StatefulSets (%d pods), waiting until Ready", len(names), *pods)
	readyStart := time.Now()
	for _, name := range names {
		if _, err := cs.AppsV1().StatefulSets(benchNS).Create(ctx, benchStatefulSet(name, sizes[name]), metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	if err := waitFor(ctx, env, *readyTimeout, "pods Ready", func() (int, int, error) {
		if err := checkAlive(ctrl, fl); err != nil {
			return 0, 0, err
		}
		list, err := cs.AppsV1().StatefulSets(benchNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, 0, err
		}
		ready := 0
		for _, s := range list.Items {
			ready += int(s.Status.ReadyReplicas)
		}
		return ready, *pods, nil
	}); err != nil {
		return nil, err
	}
	readyTook := time.Since(readyStart)
	env.logf("%d pods Ready in %s", *pods, readyTook.Round(time.Second))
	before, err := podUIDs(ctx, cs, benchNS)
	if err != nil {
		return nil, err
	}
	podNames := make([]string, 0, len(before))
	for n := range before {
		podNames = append(podNames, n)
	}
	sort.Strings(podNames)

	capBefore, err := writeCapacity(ctx, c, benchNS, podNames, *capWorkers, *capSeconds, *capMax)
	if err != nil {
		return nil, err
	}
	env.logf("apiserver write capacity before: %.0f writes/s (%d writes, %d errors)", capBefore.rate(), capBefore.Writes, capBefore.Errors)
	// The capacity probe's label writes reach the controller as pod
	// events: its ingest is quiet once it has journaled them all.
	var m0 scraped
	last, quiet := -1.0, 0
	if err := waitFor(ctx, env, time.Minute, "the controller journals the probe's writes", func() (int, int, error) {
		m, err := scrapeMetrics(ctx, hc, metricsURL)
		if err != nil {
			return 0, 0, err
		}
		m0 = m
		if n := m.values["rollbook_ingest_records_total"]; n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
		return quiet, 2, nil // the same count a second apart
	}); err != nil {
		return nil, err
	}
	cpu0 := cpuOf(c, fl, ctrl)
	a0, err := apiserverMetrics(ctx, c)
	if err != nil {
		return nil, err
	}
	// The bench's own watch of the pods, to tell the apiserver's watch
	// delivery from ingest's processing: every event's arrival by
	// resourceVersion.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	arrivals, watchDone, err := watchArrivals(wctx, c)
	if err != nil {
		return nil, err
	}
	if *heapProfile != "" {
		if err := fetchHeap(ctx, env, metricsURL, *heapProfile+".ready"); err != nil {
			return nil, err
		}
	}
	env.logf("rolling app:v1 → app:v2 in place (%d InPlaceRollouts, maxUnavailable %s, grace %ds, scatter zone)", len(names), *maxUnavailable, *grace)
	rollStart := time.Now()
	defer profileBeside(env, "controller", *profile, *profileFor, func() error {
		return fetchProfile(ctx, metricsURL, *profile, *profileFor)
	})()
	defer profileBeside(env, "kube-apiserver", *apiProfile, *profileFor, func() error {
		return fetchAPIServerProfile(ctx, c, *apiProfile, *profileFor)
	})()
	dyn := dynamic.NewForConfigOrDie(c.Config())
	for _, name := range names {
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.example/app:v2"}]}}}}`
		if _, err := cs.AppsV1().StatefulSets(benchNS).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		if _, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(benchNS).Create(ctx, benchRollout(name, *maxUnavailable, *grace), metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	var t10, t90 time.Duration
	err = waitFor(ctx, env, *timeout, "pods updated and ready", func() (int, int, error) {
		if err := checkAlive(ctrl, fl); err != nil {
			return 0, 0, err
		}
		list, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(benchNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, 0, err
		}
		done, succeeded := 0, 0
		for _, u := range list.Items {
			st, _, _ := unstructured.NestedMap(u.Object, "status")
			phase, _ := st["phase"].(string)
			ready, _ := st["updatedReady"].(int64)
			failed, _ := st["failed"].(int64)
			switch {
			case phase == "Succeeded":
				succeeded++
				done += int(sizes[strings.TrimSuffix(u.GetName(), "-v2")])
				continue
			case phase == "Failed" || failed > 0:
				return 0, 0, fmt.Errorf("rollout %s: phase %s, failed %d, conditions %v", u.GetName(), phase, failed, st["conditions"])
			}
			done += int(ready)
		}
		el := time.Since(rollStart)
		if t10 == 0 && done >= *pods/10 {
			t10 = el
		}
		if t90 == 0 && done >= *pods*9/10 {
			t90 = el
		}
		if succeeded < len(names) {
			done = min(done, *pods-1) // not done until every rollout says so
		}
		return done, *pods, nil
	})
	rollEnd := time.Now()
	took := rollEnd.Sub(rollStart)
	stopWatch()
	<-watchDone
	if err != nil {
		return nil, fmt.Errorf("%w\ncontroller log:\n%s", err, cluster.Tail(ctrl.Log, 20))
	}
	cpu1 := cpuOf(c, fl, ctrl)
	m1, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return nil, err
	}
	a1, err := apiserverMetrics(ctx, c)
	if err != nil {
		return nil, err
	}
	served := servedWrites(a0, a1)
	env.logf("rollout Succeeded in %s (%.1f pods/s)", took.Round(100*time.Millisecond), float64(*pods)/took.Seconds())

	// What the pods say.
	after, err := listPods(ctx, cs, benchNS)
	if err != nil {
		return nil, err
	}
	var updated, recreated, ready int
	for _, p := range after {
		if len(p.Spec.Containers) > 0 && p.Spec.Containers[0].Image == "registry.example/app:v2" {
			updated++
		}
		if uid, ok := before[p.Name]; !ok || uid != p.UID {
			recreated++
		}
		for _, cd := range p.Status.Conditions {
			if cd.Type == corev1.PodReady && cd.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}

	capAfter, err := writeCapacity(ctx, c, benchNS, podNames, *capWorkers, *capSeconds, *capMax)
	if err != nil {
		return nil, err
	}
	env.logf("apiserver write capacity after: %.0f writes/s (%d writes, %d errors)", capAfter.rate(), capAfter.Writes, capAfter.Errors)

	if *heapProfile != "" {
		if err := fetchHeap(ctx, env, metricsURL, *heapProfile+".done"); err != nil {
			return nil, err
		}
	}
	rss := map[string]map[string]float64{}
	for name, pid := range pids(c, fl, ctrl) {
		hwm, _ := procStatusKB(pid, "VmHWM")
		cur, _ := procStatusKB(pid, "VmRSS")
		rss[name] = map[string]float64{"peak_mib": round(float64(hwm)/1024, 1), "now_mib": round(float64(cur)/1024, 1)}
	}
	ctrl.Stop(10 * time.Second)
	if exited, werr := ctrl.Exited(); exited && werr != nil {
		env.logf("controller exit: %v", werr)
	}
	loop, err := analyzeJournal(ctx, filepath.Join(root, "journal"), rollStart, rollEnd, arrivals)
	if err != nil {
		return nil, fmt.Errorf("reading the controller's journal: %w", err)
	}

	// Figures.
	writes := map[string]int64{}
	for k, v := range m1.writes {
		if d := v - m0.writes[k]; d > 0 {
			writes[k] = d
		}
	}
	podWrites := writes["patch pods"] + writes["patch pods/status"] + writes["create pods/eviction"]
	perPod := float64(podWrites) / float64(*pods)
	rate := float64(*pods) / took.Seconds()
	capacity := (capBefore.rate() + capAfter.rate()) / 2
	bound := capacity / 3
	var steady float64
	if t90 > t10 {
		steady = float64(*pods*8/10) / (t90 - t10).Seconds()
	}

	fmt.Printf("\nrollout: %d pods in %d StatefulSets of ≤%d on %d %s nodes (3 zones), 2 containers, gate %s; one InPlaceRollout each: maxUnavailable %s, grace %ds, scatter zone; controller: the rollbook binary as %s, --kube-api-qps %s --kube-api-burst %s --workers %s, NATS %v\n",
		*pods, len(names), *stsSize, *nodes, fl.Kind, planner.GateCondition, *maxUnavailable, *grace, identity, orDefault(*qps), orDefault(*burst), orDefault(*workers), *withNATS)
	printMachine(env)
	fmt.Printf("  setup: %d pods created and Ready in %s\n", *pods, readyTook.Round(time.Second))
	fmt.Printf("  rollout: template patch → every rollout Succeeded in %s: %.1f pods/s (10%%→90%% of pods: %.1f pods/s)\n", took.Round(100*time.Millisecond), rate, steady)
	fmt.Printf("  pods after: %d on app:v2, %d Ready, %d recreated (UID changed)\n", updated, ready, recreated)
	fmt.Printf("  controller API writes during the rollout: %s\n", fmtCounts(writes))
	fmt.Printf("  pod writes per pod: %.2f (patch pods %d + patch pods/status %d + create pods/eviction %d); rollout status writes: %d\n",
		perPod, writes["patch pods"], writes["patch pods/status"], writes["create pods/eviction"], writes["patch inplacerollouts/status"])
	fmt.Printf("  apiserver write capacity (%d workers, label merge-patches on these pods, ≤%s): %.0f writes/s before, %.0f after → %.0f; 3 writes/pod bound %.1f pods/s\n",
		*capWorkers, *capSeconds, capBefore.rate(), capAfter.rate(), capacity, bound)
	fmt.Printf("  ratio pods/s ÷ (capacity/3): %.2f\n", rate/bound)
	// Everyone's writes, as the apiserver counted them: Rollbook's are
	// only part of what its capacity serves during a rollout.
	allWrites := served.total()
	fleetStatus := served["PATCH pods/status"] + served["PUT pods/status"] - float64(writes["patch pods/status"])
	fmt.Printf("  writes the apiserver served during the rollout, every client (apiserver_request_total): %.0f, %.0f/s = %.2f of the capacity; %.1f per pod, of which Rollbook's pods %.2f and the %s kubelets' pods/status %.2f; by verb and resource: %s\n",
		allWrites, allWrites/took.Seconds(), served.vsCapacity(took, capacity), allWrites/float64(*pods), perPod, fl.Kind, fleetStatus/float64(*pods), served)
	// The controller's own histograms split the journal's lag behind the
	// bench's watch: arrival at Rollbook's watch (after client-go's
	// decode) → committed, and the plans' cost.
	for _, h := range []struct{ name, what string }{
		{"rollbook_ingest_lag_seconds", "Rollbook's ingest lag (event off its watch → committed)"},
		{"rollbook_plan_duration_seconds", "Rollbook's plans (each)"},
	} {
		n, med, p90 := histogramDelta(m0, m1, h.name)
		fmt.Printf("  %s, during the rollout: %d, median ≤ %s, p90 ≤ %s (histogram buckets)\n", h.what, n, med, p90)
	}
	fmt.Printf("  vs OpenKruise v1.9.0 here (GROUND.md): %.1f pods/s at 1,000 and 5,000 pods → %.1f× its speed; %.1f writes/pod → %.2f× its writes\n",
		kruisePodsPerSec, rate/kruisePodsPerSec, kruiseWritesPerPod, perPod/kruiseWritesPerPod)
	fmt.Printf("  peak RSS (VmHWM): rollbook %.1f MiB, %s %.1f MiB, kube-apiserver %.1f MiB, etcd %.1f MiB\n",
		rss["rollbook"]["peak_mib"], fl.Kind, rss[fl.Kind]["peak_mib"], rss["kube-apiserver"]["peak_mib"], rss["etcd"]["peak_mib"])
	knownPods := m1.values[`rollbook_ingest_known_objects{resource="pods"}`]
	fmt.Printf("  pods ingest remembers at the end (rollbook_ingest_known_objects): %.0f, before the rollout %.0f\n",
		knownPods, m0.values[`rollbook_ingest_known_objects{resource="pods"}`])
	cpu := map[string]float64{}
	for k, v := range cpu1 {
		cpu[k] = round(v-cpu0[k], 1)
	}
	fmt.Printf("  CPU seconds during the rollout: %s (wall %.0f s, 2 cores = %.0f CPU-s)\n", fmtFloats(cpu), took.Seconds(), 2*took.Seconds())
	fmt.Printf("  controller journal during the rollout: %d records in %d commits (%.1f records/commit), %d ticks, %d observed, %d intents, %d succeeded, %d failed %v\n",
		loop.Records, loop.Commits, float64(loop.Records)/float64(max(loop.Commits, 1)), loop.Ticks, loop.Observed, loop.Intents, loop.Succeeded, loop.Failed, loop.FailedByClass)
	fmt.Printf("  per-pod cycle (from journal record times, %d pods): %s median %s, p90 %s; mean pods in flight ≈ %.0f\n",
		loop.Pods, loop.Cycle.Name, loop.Cycle.Median.Round(time.Millisecond), loop.Cycle.P90.Round(time.Millisecond), rate*loop.Cycle.Median.Seconds())
	printPhases(loop)
	fmt.Printf("  with the bench's own watch of the pods (%d events matched by resourceVersion):\n", loop.Matched)
	for _, ph := range []phaseStat{loop.WatchDelay, loop.IngestLag} {
		fmt.Printf("    %-58s median %7s   p90 %7s\n", ph.Name, ph.Median.Round(time.Millisecond), ph.P90.Round(time.Millisecond))
	}
	if updated != *pods || recreated != 0 {
		fmt.Printf("  WARNING: %d of %d pods updated, %d recreated\n", updated, *pods, recreated)
	}
	return map[string]any{
		"pods": *pods, "nodes": *nodes, "fleet": fl.Kind, "statefulsets": len(names), "max_unavailable": *maxUnavailable, "grace_seconds": *grace, "nats": *withNATS,
		"ready_setup_s":              round(readyTook.Seconds(), 1),
		"rollout_s":                  round(took.Seconds(), 1),
		"pods_per_s":                 round(rate, 1),
		"pods_per_s_10_90":           round(steady, 1),
		"writes":                     writes,
		"pod_writes_per_pod":         round(perPod, 2),
		"status_writes":              writes["patch inplacerollouts/status"],
		"capacity_before":            round(capBefore.rate(), 0),
		"capacity_after":             round(capAfter.rate(), 0),
		"ratio_vs_capacity_over_3":   round(rate/bound, 2),
		"served_writes":              round(allWrites, 0),
		"served_writes_per_pod":      round(allWrites/float64(*pods), 2),
		"served_vs_capacity":         round(served.vsCapacity(took, capacity), 2),
		"fleet_status_per_pod":       round(fleetStatus/float64(*pods), 2),
		"ratio_vs_kruise_pods_per_s": round(rate/kruisePodsPerSec, 1),
		"updated":                    updated, "ready": ready, "recreated": recreated,
		"rss": rss, "cpu_seconds": cpu, "ingest_known_pods": knownPods,
		"journal": map[string]any{
			"records": loop.Records, "commits": loop.Commits, "ticks": loop.Ticks, "observed": loop.Observed,
			"intents": loop.Intents, "succeeded": loop.Succeeded, "failed": loop.Failed, "failed_by_class": loop.FailedByClass,
			"cycle_median_s": round(loop.Cycle.Median.Seconds(), 3), "cycle_p90_s": round(loop.Cycle.P90.Seconds(), 3),
			"phases":      phaseMap(loop.Phases),
			"ingest_lag":  []float64{round(loop.IngestLag.Median.Seconds(), 3), round(loop.IngestLag.P90.Seconds(), 3)},
			"watch_delay": []float64{round(loop.WatchDelay.Median.Seconds(), 3), round(loop.WatchDelay.P90.Seconds(), 3)},
		},
	}, nil
}

// buildRollbook builds the product binary into dir, unless given names
// one already built (--binary).
func buildRollbook(ctx context.Context, env *benchEnv, dir, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	src, err := cluster.SourceDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "rollbook")
	env.logf("building the rollbook binary")
	// No demo, as in the image (deploy/image's Tags).
	if err := buildAsImage(ctx, src, "./cmd/rollbook", bin, "-tags", "nodemo"); err != nil {
		return "", err
	}
	return bin, nil
}

// buildAsImage builds package pkg of the source tree src into out as
// deploy/image builds the controller: without cgo, so Pebble's memtables
// and block cache are Go memory, as they are in production (with cgo they
// are C memory, outside the Go heap), and -trimpath.
func buildAsImage(ctx context.Context, src, pkg, out string, flags ...string) error {
	args := append(append([]string{"build", "-trimpath"}, flags...), "-o", out, pkg)
	build := exec.CommandContext(ctx, "go", args...)
	build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s without cgo: %v\n%s", pkg, err, b)
	}
	return nil
}

// rollbookRun is how the bench runs the controller: `rollbook run`
// without leader election, on one namespace.
type rollbookRun struct {
	Bin, Dir   string // the binary; the directory of its journal and log
	Kubeconfig string
	Namespace  string
	// QPS, Burst and Workers are passed on when positive (the binary's
	// defaults otherwise).
	QPS, Burst, Workers int
	NATS                bool // its embedded NATS outbox (--no-nats otherwise)
	Pprof               bool // serve /debug/pprof (rollbook run --pprof)
	// Extra are more `rollbook run` flags, as given.
	Extra []string
}

// profileBeside runs fetch, which writes what's CPU profile over d to path,
// beside the rollout (nothing when path is ""); the returned func waits for
// it and says where the profile went.
func profileBeside(env *benchEnv, what, path string, d time.Duration, fetch func() error) (wait func()) {
	done := make(chan error, 1)
	if path == "" {
		done <- nil
	} else {
		go func() { done <- fetch() }()
	}
	return func() {
		if err := <-done; err != nil {
			env.logf("%s profile: %v", what, err)
		} else if path != "" {
			env.logf("%s CPU profile (%s from the template change): %s", what, d, path)
		}
	}
}

// fetchProfile saves a CPU profile of the controller over d.
func fetchProfile(ctx context.Context, base, path string, d time.Duration) error {
	return saveProfile(ctx, &http.Client{}, base, path, d)
}

// fetchAPIServerProfile saves a CPU profile of kube-apiserver over d, read
// as the cluster's admin (its /debug/pprof is behind authorization).
func fetchAPIServerProfile(ctx context.Context, c *cluster.Cluster, path string, d time.Duration) error {
	hc, err := rest.HTTPClientFor(c.Config())
	if err != nil {
		return err
	}
	return saveProfile(ctx, hc, c.Server, path, d)
}

// saveProfile writes base's /debug/pprof/profile over d to path.
func saveProfile(ctx context.Context, hc *http.Client, base, path string, d time.Duration) error {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	hc.Timeout = d + 30*time.Second
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fetchHeap saves a heap profile of the controller, taken after a GC,
// and logs its heap figures (runtime.MemStats, as /debug/pprof/heap?debug=1
// ends with them).
func fetchHeap(ctx context.Context, env *benchEnv, base, path string) error {
	get := func(query string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pprof/heap?"+query, nil)
		if err != nil {
			return nil, err
		}
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET heap profile: %s", resp.Status)
		}
		return io.ReadAll(resp.Body)
	}
	b, err := get("gc=1")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	text, err := get("debug=1")
	if err != nil {
		return err
	}
	var figures []string
	for _, line := range strings.Split(string(text), "\n") {
		for _, name := range []string{"HeapAlloc", "HeapInuse", "HeapSys", "HeapReleased", "Sys", "NextGC"} {
			if strings.HasPrefix(line, "# "+name+" = ") {
				n, _ := strconv.ParseFloat(strings.TrimPrefix(line, "# "+name+" = "), 64)
				figures = append(figures, fmt.Sprintf("%s %.1f MiB", name, n/(1<<20)))
			}
		}
	}
	env.logf("controller heap profile %s: %s", path, strings.Join(figures, ", "))
	return nil
}

// startRollbook starts the controller and waits until it serves /readyz;
// it returns the process and the base URL of its /metrics.
func startRollbook(ctx context.Context, env *benchEnv, r rollbookRun) (*cluster.Process, string, error) {
	port, err := cluster.FreePort()
	if err != nil {
		return nil, "", err
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"run", "--kubeconfig", r.Kubeconfig, "--journal-dir", filepath.Join(r.Dir, "journal"),
		"--leader-elect=false", "--namespaces", r.Namespace, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port)}
	for _, f := range []struct {
		name string
		v    int
	}{{"--kube-api-qps", r.QPS}, {"--kube-api-burst", r.Burst}, {"--workers", r.Workers}} {
		if f.v > 0 {
			args = append(args, f.name, strconv.Itoa(f.v))
		}
	}
	if !r.NATS {
		args = append(args, "--no-nats")
	}
	if r.Pprof {
		args = append(args, "--pprof")
	}
	args = append(args, r.Extra...)
	env.logf("starting %s %s", r.Bin, strings.Join(args, " "))
	ctrl, err := cluster.StartProcess("rollbook", r.Dir, r.Bin, args, nil)
	if err != nil {
		return nil, "", err
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	if err := ctrl.WaitFor(ctx, time.Minute, "serving /readyz", func(ctx context.Context) error {
		_, err := scrape(ctx, hc, metricsURL+"/readyz")
		return err
	}); err != nil {
		ctrl.Stop(10 * time.Second)
		return nil, "", err
	}
	return ctrl, metricsURL, nil
}

func benchStatefulSet(name string, replicas int32) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:   map[string]string{fleet.TypeLabel: fleet.TypeValue},
					ReadinessGates: []corev1.PodReadinessGate{{ConditionType: planner.GateCondition}},
					Containers: []corev1.Container{
						{Name: "app", Image: "registry.example/app:v1"},
						{Name: "log", Image: "registry.example/log:v1"},
					},
				},
			},
		},
	}
}

func benchRollout(sts, maxUnavailable string, grace int) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rollbook.dev/v1alpha1", "kind": "InPlaceRollout",
		"metadata": map[string]any{"name": sts + "-v2"},
		"spec": map[string]any{
			"target": map[string]any{"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts}},
			"strategy": map[string]any{
				"maxUnavailable":     maxUnavailable,
				"gracePeriodSeconds": int64(grace),
				"scatter":            []any{map[string]any{"key": fleet.ZoneLabel}},
			},
		},
	}}
}

// waitFor polls progress every 500 ms until done ≥ total, logging every 10 s.
func waitFor(ctx context.Context, env *benchEnv, timeout time.Duration, what string, progress func() (done, total int, err error)) error {
	start := time.Now()
	var lastLog time.Time
	for {
		done, total, err := progress()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if total > 0 && done >= total {
			return nil
		}
		if time.Since(lastLog) >= 10*time.Second {
			env.logf("  %s: %d/%d after %s", what, done, total, time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("%s: %d/%d after %s", what, done, total, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func checkAlive(ctrl *cluster.Process, fl *fleet.Fleet) error {
	if exited, err := ctrl.Exited(); exited {
		return fmt.Errorf("the controller exited (%v)\n%s", err, cluster.Tail(ctrl.Log, 30))
	}
	return fl.Healthy()
}

func listPods(ctx context.Context, cs kubernetes.Interface, ns string) ([]corev1.Pod, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func podUIDs(ctx context.Context, cs kubernetes.Interface, ns string) (map[string]types.UID, error) {
	pods, err := listPods(ctx, cs, ns)
	if err != nil {
		return nil, err
	}
	out := make(map[string]types.UID, len(pods))
	for _, p := range pods {
		out[p.Name] = p.UID
	}
	return out, nil
}

type capacityRun struct {
	Writes, Errors int64
	Took           time.Duration
}

func (r capacityRun) rate() float64 { return float64(r.Writes) / r.Took.Seconds() }

// writeCapacity measures the apiserver's write rate on this fleet: workers
// parallel metadata label merge-patches over pods of namespace ns, for at
// most d and at most maxWrites writes, with no client-side rate limit.
func writeCapacity(ctx context.Context, c *cluster.Cluster, ns string, pods []string, workers int, d time.Duration, maxWrites int) (capacityRun, error) {
	cfg := c.Config()
	cfg.QPS, cfg.Burst = 1e6, 1e6
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return capacityRun{}, err
	}
	// NB: the deadline is checked between requests, not put on ctx, so no
	// request is cut off half way (and counted as neither).
	deadline := time.Now().Add(d)
	var next, ok, failed atomic.Int64
	var wg sync.WaitGroup
	stamp := time.Now().UnixNano()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= int64(maxWrites) {
					return
				}
				patch := fmt.Sprintf(`{"metadata":{"labels":{"bench-touch":"%d-%d"}}}`, stamp, i)
				_, err := cs.CoreV1().Pods(ns).Patch(ctx, pods[int(i)%len(pods)], types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				if err == nil {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return capacityRun{Writes: ok.Load(), Errors: failed.Load(), Took: time.Since(start)}, nil
}

type scraped struct {
	writes map[string]int64 // "<verb> <resource>"
	values map[string]float64
}

func scrape(ctx context.Context, hc *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return b.String(), sc.Err()
}

// scrapeMetrics reads the controller's /metrics: API writes by verb and
// resource, and every other sample by its full name with labels.
func scrapeMetrics(ctx context.Context, hc *http.Client, base string) (scraped, error) {
	text, err := scrape(ctx, hc, base+"/metrics")
	if err != nil {
		return scraped{}, err
	}
	return parseMetrics(text), nil
}

// parseMetrics reads Prometheus text: every sample by its full name with
// labels, and rollbook_api_writes_total by "verb resource".
func parseMetrics(text string) scraped {
	s := scraped{writes: map[string]int64{}, values: map[string]float64{}}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name, val := line[:i], line[i+1:]
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		s.values[name] = v
		if rest, ok := strings.CutPrefix(name, "rollbook_api_writes_total{"); ok {
			verb, res := labelValue(rest, "verb"), labelValue(rest, "resource")
			s.writes[verb+" "+res] = int64(v)
		}
	}
	return s
}

// histogramDelta reads what a Prometheus histogram counted between two
// scrapes: how many, and the upper bounds of the buckets that hold the
// median and the 90th percentile.
func histogramDelta(before, after scraped, name string) (count int64, median, p90 string) {
	type bucket struct {
		le float64
		n  float64
	}
	var bs []bucket
	for k, v := range after.values {
		rest, ok := strings.CutPrefix(k, name+"_bucket{")
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(labelValue(rest, "le"), 64)
		if err != nil && labelValue(rest, "le") != "+Inf" {
			continue
		}
		if err != nil {
			le = math.Inf(1)
		}
		bs = append(bs, bucket{le, v - before.values[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, "-", "-"
	}
	total := bs[len(bs)-1].n
	at := func(q float64) string {
		for _, b := range bs {
			if b.n >= q*total && !math.IsInf(b.le, 1) {
				return fmt.Sprint(time.Duration(b.le * float64(time.Second)))
			}
		}
		return "+Inf"
	}
	return int64(total), at(0.5), at(0.9)
}

// served counts the writes an apiserver served between two scrapes of its
// metrics, by "VERB resource[/subresource]" (every code: a conflict costs
// the server too).
type served map[string]float64

func servedWrites(a0, a1 scraped) served {
	out := served{}
	for key, v1 := range a1.values {
		name, l := splitSample(key)
		if name != "apiserver_request_total" {
			continue
		}
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION":
		default:
			continue
		}
		if d := v1 - a0.values[key]; d > 0 {
			what := l["resource"]
			if l["subresource"] != "" {
				what += "/" + l["subresource"]
			}
			out[l["verb"]+" "+what] += d
		}
	}
	return out
}

// vsCapacity is the rate served over d, as a share of capacity
// (writes/s).
func (s served) vsCapacity(d time.Duration, capacity float64) float64 {
	return s.total() / d.Seconds() / capacity
}

func (s served) total() float64 {
	var n float64
	for _, v := range s {
		n += v
	}
	return n
}

// String lists the counts, largest first.
func (s served) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s[keys[i]] > s[keys[j]] || s[keys[i]] == s[keys[j]] && keys[i] < keys[j] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, s[k]))
	}
	return strings.Join(parts, ", ")
}

func labelValue(labels, name string) string {
	_, v, ok := strings.Cut(labels, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, `"`)
	return v
}

func pids(c *cluster.Cluster, fl *fleet.Fleet, ctrl *cluster.Process) map[string]int {
	out := map[string]int{"rollbook": ctrl.Pid(), fl.Kind: fl.Process().Pid()}
	for _, n := range []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler"} {
		if p := c.Process(n); p != nil {
			out[n] = p.Pid()
		}
	}
	return out
}

// cpuOf returns each process's CPU seconds so far (user + system).
func cpuOf(c *cluster.Cluster, fl *fleet.Fleet, ctrl *cluster.Process) map[string]float64 {
	out := map[string]float64{}
	for name, pid := range pids(c, fl, ctrl) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out[name] = (ut + st) / 100 // USER_HZ
	}
	return out
}

func fmtCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func fmtFloats(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func phaseMap(ps []phaseStat) map[string][]float64 {
	out := map[string][]float64{}
	for _, p := range ps {
		out[p.Name] = []float64{round(p.Median.Seconds(), 3), round(p.P90.Seconds(), 3)}
	}
	return out
}

// watchArrivals watches the pods of benchNS from now on and records when
// each event (by resourceVersion) arrived, until ctx ends; done is closed
// then, after which the map may be read.
func watchArrivals(ctx context.Context, c *cluster.Cluster) (map[string]time.Time, <-chan struct{}, error) {
	cfg := c.Config()
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	list, err := cs.CoreV1().Pods(benchNS).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return nil, nil, err
	}
	rv := list.ResourceVersion
	arrivals := map[string]time.Time{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := cs.CoreV1().Pods(benchNS).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				now := time.Now()
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = p.ResourceVersion
				if ev.Type != "BOOKMARK" {
					arrivals[rv] = now
				}
			}
			w.Stop()
		}
	}()
	return arrivals, done, nil
}
