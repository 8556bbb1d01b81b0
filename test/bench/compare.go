package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// compareCmd rolls the same pods in place twice on one cluster, once with
// the rollbook binary and once with OpenKruise's CloneSet, and counts each
// controller's requests from the apiserver's audit log: the peer measured
// in the same run, not quoted.
//
// One control plane (default admission plugins, audit log on), one kwok
// fleet (in-place restart 200 ms after the patch). Rollbook goes first,
// under its own ServiceAccount with deploy/rbac.yaml, on a StatefulSet
// (OnDelete) and an InPlaceRollout; its pods are deleted afterwards.
// OpenKruise v1.9.0 is installed next (its webhooks on pods are in the
// apiserver's path only from then on) and runs with its defaults, under
// its own ServiceAccount and ClusterRole, on a CloneSet (InPlaceIfPossible).
// Both: N replicas of one container plus the controller's readiness gate,
// image app:v1 → app:v2, maxUnavailable 10 %, grace 0. The apiserver's
// write capacity (parallel label patches on that phase's pods) is measured
// before and after each rollout.
func compareCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("compare")
	o := compareOpts{}
	fs.IntVar(&o.Pods, "pods", 1000, "replicas of each workload")
	nodes := fs.Int("nodes", 20, "simulated nodes (3 zones)")
	fs.StringVar(&o.MaxUnavailable, "max-unavailable", "10%", "maxUnavailable of both rollouts")
	fs.DurationVar(&o.CapSeconds, "capacity-time", 10*time.Second, "how long each write-capacity loop runs")
	fs.IntVar(&o.CapWorkers, "capacity-workers", 16, "parallel writers of the write-capacity loop")
	fs.IntVar(&o.CapMax, "capacity-max", 20000, "most writes of one write-capacity loop")
	fs.IntVar(&o.RollbookQPS, "rollbook-qps", 0, "the rollbook binary's --kube-api-qps (0: its default)")
	fs.IntVar(&o.RollbookBurst, "rollbook-burst", 0, "the rollbook binary's --kube-api-burst (0: its default)")
	fs.IntVar(&o.RollbookWorkers, "rollbook-workers", 0, "the rollbook binary's --workers (0: its default)")
	fs.IntVar(&o.KruiseQPS, "kruise-qps", 0, "kruise-manager's --rest-config-qps (0: its default, 30)")
	fs.IntVar(&o.KruiseBurst, "kruise-burst", 0, "kruise-manager's --rest-config-burst (0: its default, 50)")
	binary := fs.String("binary", "", "a built rollbook binary (default: go build ./cmd/rollbook)")
	kwokWorkers := fs.Int("kwok-parallelism", 16, "kwok's pod stage workers (the lean kubelet's workers with --fleet lean)")
	fleetKind := fs.String("fleet", fleet.Kwok, "the simulated kubelets: kwok or lean")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", 20*time.Minute, "bound on creating each workload's pods and their becoming Ready")
	fs.DurationVar(&o.Timeout, "timeout", 40*time.Minute, "bound on each rollout")
	keep := fs.Bool("keep", false, "keep the work directory (logs, journal, audit log)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.Pods <= 0 || *nodes <= 0 {
		return nil, errors.New("bench: --pods and --nodes must be positive")
	}
	root, cleanup, err := env.workDir("compare", *keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	o.Root = root

	// Both builds before the cluster starts: they are the heaviest part
	// of a cold run and would otherwise share the cores with it.
	bin, err := buildRollbook(ctx, env, root, *binary)
	if err != nil {
		return nil, err
	}
	kb, err := buildKruise(ctx, env)
	if err != nil {
		return nil, err
	}

	c, fl, stop, err := startGround(ctx, env, root, cluster.Options{AuditLog: true}, fleet.Options{Kind: *fleetKind, Parallelism: *kwokWorkers}, *nodes)
	if err != nil {
		return nil, err
	}
	defer stop()

	rb, err := rollbookPhase(ctx, env, c, fl, o, bin)
	if err != nil {
		return nil, fmt.Errorf("rollbook: %w", err)
	}
	kr, err := kruisePhase(ctx, env, c, fl, o, kb)
	if err != nil {
		return nil, fmt.Errorf("openkruise: %w", err)
	}

	env.logf("reading the audit log")
	if err := c.SyncAuditLog(ctx, time.Minute); err != nil {
		return nil, err
	}
	for _, p := range []*peerRun{rb, kr} {
		if p.Requests, err = countRequests(c.AuditLog, p.UserAgent, p.Start, p.End); err != nil {
			return nil, err
		}
	}
	if st, err := os.Stat(c.AuditLog); err == nil {
		env.logf("audit log: %.0f MiB", float64(st.Size())/(1<<20))
	}

	printCompare(env, o, *nodes, fl.Kind, rb, kr)
	return map[string]any{
		"pods": o.Pods, "nodes": *nodes, "fleet": fl.Kind, "max_unavailable": o.MaxUnavailable,
		"rollbook": rb.summary(o.Pods), "openkruise": kr.summary(o.Pods),
		"ratio_pods_per_s":         round(rb.rate(o.Pods)/kr.rate(o.Pods), 2),
		"ratio_pod_writes_per_pod": round(rb.Requests.podWritesPerPod(o.Pods)/kr.Requests.podWritesPerPod(o.Pods), 2),
		"ratio_peak_rss":           round(float64(rb.PeakRSSKiB)/float64(kr.PeakRSSKiB), 2),
	}, nil
}

type compareOpts struct {
	Root                       string
	Pods                       int
	MaxUnavailable             string
	CapSeconds                 time.Duration
	CapWorkers, CapMax         int
	RollbookQPS, RollbookBurst int
	RollbookWorkers            int
	KruiseQPS, KruiseBurst     int
	ReadyTimeout, Timeout      time.Duration
}

// peerRun is one controller's rollout in the comparison.
type peerRun struct {
	Name       string
	Controller string // how it ran
	UserAgent  string // the prefix of its clients' user agents
	ReadyTook  time.Duration
	// Start is the template change; End the first poll that saw every
	// pod updated and Ready (and the controller's own status say so).
	Start, End          time.Time
	T10, T90            time.Duration
	CapBefore, CapAfter capacityRun
	Updated, Ready      int
	Recreated           int
	PeakRSSKiB          uint64
	CPU, APIServerCPU   float64 // CPU-seconds during the rollout
	Load0, Load1        string
	Requests            requestCounts
	// Served: every client's writes the apiserver served during the
	// rollout (its apiserver_request_total), the kubelets' included.
	Served served
}

func (p *peerRun) took() time.Duration { return p.End.Sub(p.Start) }

func (p *peerRun) rate(pods int) float64 { return float64(pods) / p.took().Seconds() }

func (p *peerRun) capacity() float64 { return (p.CapBefore.rate() + p.CapAfter.rate()) / 2 }

// servedVsCapacity is every client's writes per second during the
// rollout over the capacity measured around it.
func (p *peerRun) servedVsCapacity() float64 { return p.Served.vsCapacity(p.took(), p.capacity()) }

func (p *peerRun) steady(pods int) float64 {
	if p.T90 <= p.T10 {
		return 0
	}
	return float64(pods*8/10) / (p.T90 - p.T10).Seconds()
}

func (p *peerRun) summary(pods int) map[string]any {
	r := p.Requests
	return map[string]any{
		"controller": p.Controller, "user_agent": p.UserAgent,
		"ready_setup_s": round(p.ReadyTook.Seconds(), 1),
		"rollout_s":     round(p.took().Seconds(), 1), "pods_per_s": round(p.rate(pods), 2), "pods_per_s_10_90": round(p.steady(pods), 2),
		"pod_writes": r.PodWrites, "pod_writes_per_pod": round(r.podWritesPerPod(pods), 2), "pod_writes_ok": r.PodWritesOK,
		"status_writes": r.StatusWrites, "event_writes": r.EventWrites, "other_writes": r.OtherWrites, "reads": r.Reads,
		"conflicts_409": r.Code409, "throttled_429": r.Code429, "requests": r.ByKey,
		"capacity_before": round(p.CapBefore.rate(), 0), "capacity_after": round(p.CapAfter.rate(), 0),
		"ratio_vs_capacity_over_3": round(p.rate(pods)/(p.capacity()/3), 2),
		"served_writes_per_pod":    round(p.Served.total()/float64(pods), 2),
		"served_vs_capacity":       round(p.servedVsCapacity(), 2),
		"peak_rss_mib":             mib(float64(p.PeakRSSKiB) * 1024),
		"cpu_seconds":              round(p.CPU, 1), "apiserver_cpu_seconds": round(p.APIServerCPU, 1),
		"updated": p.Updated, "ready": p.Ready, "recreated": p.Recreated,
		"load_at_start": p.Load0, "load_at_end": p.Load1,
	}
}

// requestCounts are one controller's requests during its rollout, from
// the audit log.
type requestCounts struct {
	ByKey        map[string]int64 // "verb resource code"
	UserAgents   []string
	PodWrites    int64 // pods, pods/status, pods/resize, pods/eviction: every answer
	PodWritesOK  int64 // of which 2xx
	StatusWrites int64 // the rollout object: InPlaceRollout or CloneSet, spec or status
	EventWrites  int64
	OtherWrites  int64
	Reads        int64 // get and list (watches are long-running and not counted)
	Code409      int64 // conflicts, over every request
	Code429      int64 // throttled by the apiserver, over every request
}

func (r requestCounts) podWritesPerPod(pods int) float64 { return float64(r.PodWrites) / float64(pods) }

// countRequests counts the requests in the audit log whose user agent
// starts with ua and that the apiserver received in [from, to].
func countRequests(auditLog, ua string, from, to time.Time) (requestCounts, error) {
	counts, err := cluster.CountAudit(auditLog, func(e *cluster.AuditEvent) bool {
		t := e.RequestReceivedTimestamp
		return strings.HasPrefix(e.UserAgent, ua) && !t.Before(from) && !t.After(to)
	})
	if err != nil {
		return requestCounts{}, err
	}
	return requestsFrom(counts), nil
}

// requestsFrom sorts audit-log counts into a controller's reads and
// writes by what they touch.
func requestsFrom(counts map[cluster.AuditKey]int64) requestCounts {
	r := requestCounts{ByKey: map[string]int64{}}
	agents := map[string]bool{}
	for k, n := range counts {
		agents[k.UserAgent] = true
		r.ByKey[k.String()] += n
		switch k.Code {
		case 409:
			r.Code409 += n
		case 429:
			r.Code429 += n
		}
		switch k.Verb {
		case "get", "list":
			r.Reads += n
			continue
		case "create", "update", "patch", "delete", "deletecollection":
		default:
			continue
		}
		res, _, _ := strings.Cut(k.Resource, "/")
		switch {
		case res == "pods":
			r.PodWrites += n
			if k.Code >= 200 && k.Code < 300 {
				r.PodWritesOK += n
			}
		case res == "inplacerollouts" || res == "clonesets":
			r.StatusWrites += n
		case res == "events":
			r.EventWrites += n
		default:
			r.OtherWrites += n
		}
	}
	for a := range agents {
		r.UserAgents = append(r.UserAgents, a)
	}
	sort.Strings(r.UserAgents)
	return r
}

const (
	rollbookNS = "bench-rollbook"
	kruiseNS   = "bench-kruise"
	imageV1    = "registry.example/app:v1"
	imageV2    = "registry.example/app:v2"
)

// rollbookPhase runs the rollbook binary under its ServiceAccount, rolls
// a StatefulSet of o.Pods in place, stops the controller and deletes the
// pods.
func rollbookPhase(ctx context.Context, env *benchEnv, c *cluster.Cluster, fl *fleet.Fleet, o compareOpts, bin string) (*peerRun, error) {
	cs := c.Clientset()
	dyn := dynamic.NewForConfigOrDie(c.Config())
	if err := installRollbook(ctx, c); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(o.Root, "rollbook.kubeconfig")
	if err := serviceAccountKubeconfig(ctx, c, rollbookSystem, rollbookSA, kubeconfig); err != nil {
		return nil, err
	}
	if err := createNamespace(ctx, cs, rollbookNS); err != nil {
		return nil, err
	}
	dir := filepath.Join(o.Root, "rollbook-controller")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ctrl, _, err := startRollbook(ctx, env, rollbookRun{
		Bin: bin, Dir: dir, Kubeconfig: kubeconfig, Namespace: rollbookNS,
		QPS: o.RollbookQPS, Burst: o.RollbookBurst, Workers: o.RollbookWorkers,
	})
	if err != nil {
		return nil, err
	}
	defer ctrl.Stop(10 * time.Second)
	p := &peerRun{Name: "Rollbook", UserAgent: "rollbook",
		Controller: fmt.Sprintf("rollbook run, ServiceAccount rollbook-system/rollbook (deploy/rbac.yaml), --kube-api-qps %s --kube-api-burst %s --workers %s",
			orDefault(o.RollbookQPS), orDefault(o.RollbookBurst), orDefault(o.RollbookWorkers))}
	alive := func() error { return checkAlive(ctrl, fl) }

	sts := benchStatefulSet("web", int32(o.Pods))
	sts.Spec.Template.Spec.Containers = sts.Spec.Template.Spec.Containers[:1] // app only
	env.logf("rollbook: creating a StatefulSet of %d pods, waiting until Ready", o.Pods)
	readyStart := time.Now()
	if _, err := cs.AppsV1().StatefulSets(rollbookNS).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, env, o.ReadyTimeout, "pods Ready", func() (int, int, error) {
		if err := alive(); err != nil {
			return 0, 0, err
		}
		s, err := cs.AppsV1().StatefulSets(rollbookNS).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return 0, 0, err
		}
		return int(s.Status.ReadyReplicas), o.Pods, nil
	}); err != nil {
		return nil, err
	}
	p.ReadyTook = time.Since(readyStart)

	rollout := benchRollout("web", o.MaxUnavailable, 0)
	// No scatter: a CloneSet spreads no batch over zones either.
	unstructured.RemoveNestedField(rollout.Object, "spec", "strategy", "scatter")
	err = rollPods(ctx, env, c, p, o, rollbookNS, ctrl, func() error {
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"` + imageV2 + `"}]}}}}`
		if _, err := cs.AppsV1().StatefulSets(rollbookNS).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
		_, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(rollbookNS).Create(ctx, rollout, metav1.CreateOptions{})
		return err
	}, func() (int, bool, error) {
		if err := alive(); err != nil {
			return 0, false, err
		}
		u, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(rollbookNS).Get(ctx, rollout.GetName(), metav1.GetOptions{})
		if err != nil {
			return 0, false, err
		}
		st, _, _ := unstructured.NestedMap(u.Object, "status")
		phase, _ := st["phase"].(string)
		ready, _ := st["updatedReady"].(int64)
		if failed, _ := st["failed"].(int64); phase == "Failed" || failed > 0 {
			return 0, false, fmt.Errorf("rollout %s: phase %s, failed %d, conditions %v", u.GetName(), phase, failed, st["conditions"])
		}
		return int(ready), phase == "Succeeded", nil
	}, rollHooks{})
	if err != nil {
		return nil, fmt.Errorf("%w\ncontroller log:\n%s", err, cluster.Tail(ctrl.Log, 20))
	}
	ctrl.Stop(10 * time.Second)

	env.logf("rollbook: deleting its StatefulSet and pods")
	if err := cs.AppsV1().StatefulSets(rollbookNS).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	return p, waitPodsGone(ctx, env, cs, rollbookNS)
}

// kruisePhase installs and runs OpenKruise and rolls a CloneSet of o.Pods
// in place.
func kruisePhase(ctx context.Context, env *benchEnv, c *cluster.Cluster, fl *fleet.Fleet, o compareOpts, kb kruiseBuild) (*peerRun, error) {
	cs := c.Clientset()
	dyn := dynamic.NewForConfigOrDie(c.Config())
	certDir := filepath.Join(o.Root, "kruise-certs")
	ca, err := webhookCerts(certDir)
	if err != nil {
		return nil, err
	}
	port, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	env.logf("openkruise: installing CRDs, RBAC and webhook configurations (webhooks at https://127.0.0.1:%d)", port)
	saCfg, err := installKruise(ctx, c, kb.Src, port, ca)
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(o.Root, "kruise.kubeconfig")
	if err := writeKubeconfig(kubeconfig, saCfg); err != nil {
		return nil, err
	}
	dir := filepath.Join(o.Root, "kruise-controller")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	kr, err := startKruise(ctx, env, kb.Bin, dir, kubeconfig, port, certDir, o.KruiseQPS, o.KruiseBurst)
	if err != nil {
		return nil, err
	}
	defer kr.Stop(10 * time.Second)
	p := &peerRun{Name: "OpenKruise " + kruiseVersion, UserAgent: kruiseUserAgent,
		Controller: fmt.Sprintf("kruise-manager, ServiceAccount %s/kruise-manager (config/rbac/role.yaml), --rest-config-qps %s --rest-config-burst %s, webhooks on",
			kruiseNamespace, orDefault(o.KruiseQPS), orDefault(o.KruiseBurst))}
	alive := func() error { return checkAlive(kr, fl) }
	if err := createNamespace(ctx, cs, kruiseNS); err != nil {
		return nil, err
	}

	env.logf("openkruise: creating a CloneSet of %d pods, waiting until Ready", o.Pods)
	readyStart := time.Now()
	// NB: its mutating webhook defaults the CloneSet; it serves once
	// /readyz is ok, but a first call can still race the server's
	// certificate load, so creation is retried briefly.
	if err := cluster.Poll(ctx, time.Minute, func() error {
		_, err := dyn.Resource(cloneSets).Namespace(kruiseNS).Create(ctx, benchCloneSet("web", o.Pods, o.MaxUnavailable), metav1.CreateOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("creating the CloneSet: %w\n%s", err, cluster.Tail(kr.Log, 20))
	}
	cloneSetStatus := func() (map[string]any, int64, error) {
		u, err := dyn.Resource(cloneSets).Namespace(kruiseNS).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return nil, 0, err
		}
		st, _, _ := unstructured.NestedMap(u.Object, "status")
		return st, u.GetGeneration(), nil
	}
	if err := waitFor(ctx, env, o.ReadyTimeout, "pods Ready", func() (int, int, error) {
		if err := alive(); err != nil {
			return 0, 0, err
		}
		st, _, err := cloneSetStatus()
		if err != nil {
			return 0, 0, err
		}
		ready, _ := st["readyReplicas"].(int64)
		return int(ready), o.Pods, nil
	}); err != nil {
		return nil, err
	}
	p.ReadyTook = time.Since(readyStart)

	err = rollPods(ctx, env, c, p, o, kruiseNS, kr, func() error {
		// A JSON patch of the one field: a merge patch would replace the
		// containers list and drop what defaulting filled in.
		patch := `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"` + imageV2 + `"}]`
		_, err := dyn.Resource(cloneSets).Namespace(kruiseNS).Patch(ctx, "web", types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}, func() (int, bool, error) {
		if err := alive(); err != nil {
			return 0, false, err
		}
		st, gen, err := cloneSetStatus()
		if err != nil {
			return 0, false, err
		}
		observed, _ := st["observedGeneration"].(int64)
		if observed < gen {
			return 0, false, nil // the counts are of the old template
		}
		updatedReady, _ := st["updatedReadyReplicas"].(int64)
		updated, _ := st["updatedReplicas"].(int64)
		ready, _ := st["readyReplicas"].(int64)
		n := int64(o.Pods)
		return int(updatedReady), updatedReady == n && updated == n && ready == n, nil
	}, rollHooks{})
	if err != nil {
		return nil, fmt.Errorf("%w\nkruise-manager log:\n%s", err, cluster.Tail(kr.Log, 20))
	}
	return p, nil
}

// rollHooks let a caller of rollPods change the cluster around the
// rollout: BeforeStart runs after the write capacity before and the
// controller's quiet, just before the change; AfterEnd runs once every pod
// is updated, before the capacity after. Either may be nil.
type rollHooks struct {
	BeforeStart, AfterEnd func() error
}

// rollPods is what both phases measure alike: the write capacity on ns's
// pods, the rollout (start makes the change; progress reports pods
// updated and Ready and whether the controller is done), the pods after
// it, the capacity again, and the controller's peak RSS and CPU.
func rollPods(ctx context.Context, env *benchEnv, c *cluster.Cluster, p *peerRun, o compareOpts, ns string, ctrl *cluster.Process,
	start func() error, progress func() (int, bool, error), hooks rollHooks) error {
	cs := c.Clientset()
	before, err := podUIDs(ctx, cs, ns)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(before))
	for n := range before {
		names = append(names, n)
	}
	sort.Strings(names)
	if p.CapBefore, err = writeCapacity(ctx, c, ns, names, o.CapWorkers, o.CapSeconds, o.CapMax); err != nil {
		return err
	}
	env.logf("%s: apiserver write capacity before: %.0f writes/s (%d writes, %d errors)", p.Name, p.CapBefore.rate(), p.CapBefore.Writes, p.CapBefore.Errors)
	// The controller and kwok see the capacity loop's label events too;
	// the rollout starts once the controller has drained them, which its
	// CPU going quiet tells.
	if err := waitQuiet(ctx, ctrl.Pid(), 30*time.Second); err != nil {
		return err
	}
	if hooks.BeforeStart != nil {
		if err := hooks.BeforeStart(); err != nil {
			return err
		}
	}

	apiserver := c.Process("kube-apiserver").Pid()
	cpu0, api0 := procCPU(ctrl.Pid()), procCPU(apiserver)
	p.Load0 = loadAvg()
	a0, err := apiserverMetrics(ctx, c)
	if err != nil {
		return err
	}
	env.logf("%s: rolling %s → %s in place (maxUnavailable %s, grace 0)", p.Name, imageV1, imageV2, o.MaxUnavailable)
	p.Start = time.Now()
	if err := start(); err != nil {
		return err
	}
	err = waitFor(ctx, env, o.Timeout, "pods updated and Ready", func() (int, int, error) {
		done, finished, err := progress()
		if err != nil {
			return 0, 0, err
		}
		el := time.Since(p.Start)
		if p.T10 == 0 && done >= o.Pods/10 {
			p.T10 = el
		}
		if p.T90 == 0 && done >= o.Pods*9/10 {
			p.T90 = el
		}
		if !finished {
			done = min(done, o.Pods-1)
		}
		return done, o.Pods, nil
	})
	p.End = time.Now()
	if err != nil {
		return err
	}
	p.CPU, p.APIServerCPU = procCPU(ctrl.Pid())-cpu0, procCPU(apiserver)-api0
	p.Load1 = loadAvg()
	a1, err := apiserverMetrics(ctx, c)
	if err != nil {
		return err
	}
	p.Served = servedWrites(a0, a1)
	if hooks.AfterEnd != nil {
		if err := hooks.AfterEnd(); err != nil {
			return err
		}
	}
	env.logf("%s: every pod updated and Ready in %s (%.1f pods/s)", p.Name, p.took().Round(100*time.Millisecond), p.rate(o.Pods))

	after, err := listPods(ctx, cs, ns)
	if err != nil {
		return err
	}
	for _, pod := range after {
		if len(pod.Spec.Containers) > 0 && pod.Spec.Containers[0].Image == imageV2 {
			p.Updated++
		}
		if uid, ok := before[pod.Name]; !ok || uid != pod.UID {
			p.Recreated++
		}
		for _, cd := range pod.Status.Conditions {
			if cd.Type == corev1.PodReady && cd.Status == corev1.ConditionTrue {
				p.Ready++
			}
		}
	}
	if p.CapAfter, err = writeCapacity(ctx, c, ns, names, o.CapWorkers, o.CapSeconds, o.CapMax); err != nil {
		return err
	}
	env.logf("%s: apiserver write capacity after: %.0f writes/s (%d writes, %d errors)", p.Name, p.CapAfter.rate(), p.CapAfter.Writes, p.CapAfter.Errors)
	p.PeakRSSKiB, _ = procStatusKB(ctrl.Pid(), "VmHWM")
	return nil
}

// waitQuiet waits until process pid used less than a tenth of a core over
// one second, or max passes (then it goes on: a busy machine may never
// look quiet).
func waitQuiet(ctx context.Context, pid int, max time.Duration) error {
	deadline := time.Now().Add(max)
	last := procCPU(pid)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		now := procCPU(pid)
		if now-last < 0.1 {
			return nil
		}
		last = now
	}
	return nil
}

// procCPU is a process's CPU seconds so far (user + system).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	var ut, st float64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return (ut + st) / 100 // USER_HZ
}

// waitPodsGone waits until namespace ns has no pods left (kwok finishes a
// deleted pod at once).
func waitPodsGone(ctx context.Context, env *benchEnv, cs kubernetes.Interface, ns string) error {
	return waitFor(ctx, env, 10*time.Minute, "pods deleted", func() (int, int, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return 0, 0, err
		}
		if len(list.Items) == 0 {
			return 1, 1, nil
		}
		return 0, 1, nil
	})
}

// benchCloneSet is the CloneSet the comparison rolls: the StatefulSet's
// pod template (one container; kruise adds its own readiness gate,
// InPlaceUpdateReady, to each pod it creates), updated in place when it
// can be, maxUnavailable at a time, grace 0. apps.kruise.io/v1beta1, the
// version the CRD stores and kruise's controller reads.
func benchCloneSet(name string, replicas int, maxUnavailable string) *unstructured.Unstructured {
	labels := map[string]any{"app": name}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cloneSets.GroupVersion().String(), "kind": "CloneSet",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{
			"replicas": int64(replicas),
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{
					"nodeSelector": map[string]any{fleet.TypeLabel: fleet.TypeValue},
					"containers":   []any{map[string]any{"name": "app", "image": imageV1}},
				},
			},
			"updateStrategy": map[string]any{
				"type": "RollingUpdate",
				"rollingUpdate": map[string]any{
					"podUpdatePolicy":       "InPlaceIfPossible",
					"maxUnavailable":        maxUnavailable,
					"inPlaceUpdateStrategy": map[string]any{"gracePeriodSeconds": int64(0)},
				},
			},
		},
	}}
}

func orDefault(v int) string {
	if v <= 0 {
		return "default"
	}
	return fmt.Sprint(v)
}

func printCompare(env *benchEnv, o compareOpts, nodes int, kind string, rb, kr *peerRun) {
	n := o.Pods
	fmt.Printf("\ncompare: %d pods per workload (one container + the controller's readiness gate, %s → %s in place), maxUnavailable %s, grace 0; %d %s nodes (3 zones), in-place restart 200 ms after the patch; apiserver with its default admission plugins and an audit log; Rollbook first, then OpenKruise\n",
		n, imageV1, imageV2, o.MaxUnavailable, nodes, kind)
	printMachine(env)
	fmt.Printf("  %s: %s\n  %s: %s\n", rb.Name, rb.Controller, kr.Name, kr.Controller)
	row := func(what, a, b string) { fmt.Printf("  %-50s %-22s %s\n", what, a, b) }
	load1 := func(l string) string {
		one, _, _ := strings.Cut(l, " ") // the 1-minute figure
		return one
	}
	f := func(format string, a ...any) string { return fmt.Sprintf(format, a...) }
	row("", rb.Name, kr.Name)
	row("pods created and Ready", f("%.0f s", rb.ReadyTook.Seconds()), f("%.0f s", kr.ReadyTook.Seconds()))
	row("rollout: change → every pod updated, Ready", f("%.1f s", rb.took().Seconds()), f("%.1f s", kr.took().Seconds()))
	row("pods/s", f("%.1f", rb.rate(n)), f("%.1f", kr.rate(n)))
	row("pods/s between 10 % and 90 % of pods", f("%.1f", rb.steady(n)), f("%.1f", kr.steady(n)))
	row("pod writes per pod (audit log)", f("%.2f", rb.Requests.podWritesPerPod(n)), f("%.2f", kr.Requests.podWritesPerPod(n)))
	row("  of which succeeded", f("%.2f", float64(rb.Requests.PodWritesOK)/float64(n)), f("%.2f", float64(kr.Requests.PodWritesOK)/float64(n)))
	row("rollout-object writes (InPlaceRollout / CloneSet)", f("%d", rb.Requests.StatusWrites), f("%d", kr.Requests.StatusWrites))
	row("events written", f("%d", rb.Requests.EventWrites), f("%d", kr.Requests.EventWrites))
	row("other writes", f("%d", rb.Requests.OtherWrites), f("%d", kr.Requests.OtherWrites))
	row("reads (get, list)", f("%d", rb.Requests.Reads), f("%d", kr.Requests.Reads))
	row("409 conflicts / 429 throttled", f("%d / %d", rb.Requests.Code409, rb.Requests.Code429), f("%d / %d", kr.Requests.Code409, kr.Requests.Code429))
	row("controller peak RSS (VmHWM)", f("%.0f MiB", mib(float64(rb.PeakRSSKiB)*1024)), f("%.0f MiB", mib(float64(kr.PeakRSSKiB)*1024)))
	row("CPU-s during the rollout: controller / apiserver", f("%.1f / %.1f", rb.CPU, rb.APIServerCPU), f("%.1f / %.1f", kr.CPU, kr.APIServerCPU))
	row("write capacity before / after (writes/s)", f("%.0f / %.0f", rb.CapBefore.rate(), rb.CapAfter.rate()), f("%.0f / %.0f", kr.CapBefore.rate(), kr.CapAfter.rate()))
	row("pods/s ÷ (capacity/3)", f("%.2f", rb.rate(n)/(rb.capacity()/3)), f("%.2f", kr.rate(n)/(kr.capacity()/3)))
	servedRow := func(p *peerRun) string {
		return f("%.1f/pod, %.2f× cap.", p.Served.total()/float64(n), p.servedVsCapacity())
	}
	row("writes served, every client (apiserver metrics)", servedRow(rb), servedRow(kr))
	row("pods after: on v2 / Ready / recreated", f("%d / %d / %d", rb.Updated, rb.Ready, rb.Recreated), f("%d / %d / %d", kr.Updated, kr.Ready, kr.Recreated))
	row("load average (1 min) at start → end of rollout", load1(rb.Load0)+" → "+load1(rb.Load1), load1(kr.Load0)+" → "+load1(kr.Load1))
	for _, p := range []*peerRun{rb, kr} {
		fmt.Printf("  %s's requests during its rollout (user agents %s): %s\n", p.Name, strings.Join(p.Requests.UserAgents, ", "), fmtCounts(p.Requests.ByKey))
		fmt.Printf("  every client's writes the apiserver served during %s's rollout: %s\n", p.Name, p.Served)
	}
	fmt.Printf("  Rollbook ÷ OpenKruise: %.2f× the pods/s, %.2f× the pod writes per pod, %.2f× the peak RSS\n",
		rb.rate(n)/kr.rate(n), rb.Requests.podWritesPerPod(n)/kr.Requests.podWritesPerPod(n), float64(rb.PeakRSSKiB)/float64(kr.PeakRSSKiB))
	for _, p := range []*peerRun{rb, kr} {
		if p.Updated != n || p.Ready != n || p.Recreated != 0 {
			fmt.Printf("  WARNING: %s: %d of %d pods updated, %d Ready, %d recreated\n", p.Name, p.Updated, n, p.Ready, p.Recreated)
		}
	}
}
