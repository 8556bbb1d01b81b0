package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// tenantsCmd asks what issue 12 asks of the shipped defaults on a shared
// apiserver: does Rollbook keep its pace, without a storm of 429s, when
// other tenants load the apiserver, and what does its rollout cost them?
//
// One control plane (default admission plugins, default API Priority and
// Fairness configuration, audit log on), one simulated fleet, and the
// rollbook binary at its shipped defaults under its own ServiceAccount
// (deploy/rbac.yaml), managing two namespaces of the same StatefulSets
// (`bench rollout`'s: two containers, OnDelete, readiness gate; one
// InPlaceRollout each, maxUnavailable 10 %, grace 0, scatter zone). The
// same rollout runs twice: in roll-alone with nothing else on the
// apiserver, then in roll-loaded while "tenants" — N ServiceAccounts, each
// in a namespace of its own with RBAC on its ConfigMaps only — patch and
// list their ConfigMaps as fast as their goroutines can, with no
// client-side rate limit. The tenants run alone for a while first, as a
// baseline of their own rate and latency.
//
// Everything is counted from the server's side: the audit log by user
// (Rollbook's and the tenants' requests, codes, latency, and the APF queue
// wait the apiserver notes on every request slower than 500 ms), and the
// apiserver's flowcontrol metrics between the change and the end of each
// rollout (dispatched, rejected and queue wait by FlowSchema and
// PriorityLevel). Each client's FlowSchema and PriorityLevel is read from
// the X-Kubernetes-PF-* headers of its responses.
func tenantsCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("tenants")
	o := compareOpts{}
	fs.IntVar(&o.Pods, "pods", 1000, "pods rolled in each run")
	nodes := fs.Int("nodes", 20, "simulated nodes (3 zones)")
	stsSize := fs.Int("sts-size", 1000, "pods per StatefulSet (one InPlaceRollout each)")
	fs.StringVar(&o.MaxUnavailable, "max-unavailable", "10%", "each rollout's maxUnavailable")
	fs.DurationVar(&o.CapSeconds, "capacity-time", 10*time.Second, "how long each write-capacity loop runs")
	fs.IntVar(&o.CapWorkers, "capacity-workers", 16, "parallel writers of the write-capacity loop")
	fs.IntVar(&o.CapMax, "capacity-max", 20000, "most writes of one write-capacity loop")
	qps := fs.Int("kube-api-qps", 0, "the controller's --kube-api-qps (0: its default)")
	burst := fs.Int("kube-api-burst", 0, "the controller's --kube-api-burst (0: its default)")
	workers := fs.Int("workers", 0, "the controller's --workers (0: its default, 32)")
	tl := tenantOpts{}
	fs.IntVar(&tl.Tenants, "tenants", 4, "tenants: each its own ServiceAccount and namespace")
	fs.IntVar(&tl.Writers, "tenant-writers", 6, "goroutines per tenant patching its ConfigMaps, as fast as they can")
	fs.IntVar(&tl.Listers, "tenant-listers", 2, "goroutines per tenant listing its ConfigMaps, as fast as they can")
	fs.IntVar(&tl.ConfigMaps, "tenant-configmaps", 100, "ConfigMaps per tenant (1 KiB of data each)")
	baseline := fs.Duration("tenant-baseline", 15*time.Second, "how long the tenants run alone before the loaded rollout")
	binary := fs.String("binary", "", "a built rollbook binary (default: go build ./cmd/rollbook)")
	fleetWorkers := fs.Int("fleet-parallelism", 16, "the simulated kubelet's pod workers")
	fleetKind := fs.String("fleet", fleet.Lean, "the simulated kubelets: kwok or lean")
	fs.DurationVar(&o.ReadyTimeout, "ready-timeout", 20*time.Minute, "bound on creating the pods and their becoming Ready")
	fs.DurationVar(&o.Timeout, "timeout", 20*time.Minute, "bound on each rollout")
	keep := fs.Bool("keep", false, "keep the work directory (logs, journal, audit log)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.Pods <= 0 || *stsSize <= 0 || *nodes <= 0 || tl.Tenants <= 0 || tl.Writers+tl.Listers <= 0 || tl.ConfigMaps <= 0 {
		return nil, errors.New("--pods, --sts-size, --nodes, --tenants, --tenant-configmaps and a tenant's goroutines must be positive")
	}
	root, cleanup, err := env.workDir("tenants", *keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	o.Root = root

	bin, err := buildRollbook(ctx, env, root, *binary)
	if err != nil {
		return nil, err
	}
	c, fl, stop, err := startGround(ctx, env, root, cluster.Options{AuditLog: true}, fleet.Options{Kind: *fleetKind, Parallelism: *fleetWorkers}, *nodes)
	if err != nil {
		return nil, err
	}
	defer stop()
	cs := c.Clientset()
	dyn := dynamic.NewForConfigOrDie(c.Config())
	if err := installRollbook(ctx, c); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(root, "rollbook.kubeconfig")
	if err := serviceAccountKubeconfig(ctx, c, rollbookSystem, rollbookSA, kubeconfig); err != nil {
		return nil, err
	}
	runs := []*tenantsRun{
		{peerRun: peerRun{Name: "alone", UserAgent: "rollbook"}, NS: "roll-alone"},
		{peerRun: peerRun{Name: "with tenants", UserAgent: "rollbook"}, NS: "roll-loaded", Loaded: true},
	}
	var namespaces []string
	for _, r := range runs {
		if err := createNamespace(ctx, cs, r.NS); err != nil {
			return nil, err
		}
		namespaces = append(namespaces, r.NS)
	}
	env.logf("setting up %d tenants (ServiceAccount, Role on its ConfigMaps, %d ConfigMaps each)", tl.Tenants, tl.ConfigMaps)
	load, err := newTenantLoad(ctx, c, tl)
	if err != nil {
		return nil, err
	}

	ctrlDir := filepath.Join(root, "rollbook-controller")
	if err := os.MkdirAll(ctrlDir, 0o755); err != nil {
		return nil, err
	}
	ctrl, _, err := startRollbook(ctx, env, rollbookRun{
		Bin: bin, Dir: ctrlDir, Kubeconfig: kubeconfig, Namespace: strings.Join(namespaces, ","),
		QPS: *qps, Burst: *burst, Workers: *workers,
	})
	if err != nil {
		return nil, err
	}
	defer ctrl.Stop(10 * time.Second)
	controller := fmt.Sprintf("rollbook run, ServiceAccount %s/%s (deploy/rbac.yaml), --kube-api-qps %s --kube-api-burst %s --workers %s",
		rollbookSystem, rollbookSA, orDefault(*qps), orDefault(*burst), orDefault(*workers))

	// Both namespaces' pods exist throughout: the controller tracks the
	// same pods in both runs.
	env.logf("creating StatefulSets of %d pods in %d namespaces, waiting until Ready", o.Pods, len(runs))
	readyStart := time.Now()
	for _, r := range runs {
		r.Sizes = map[string]int32{}
		for left, i := o.Pods, 0; left > 0; i++ {
			n := min(left, *stsSize)
			name := fmt.Sprintf("web-%02d", i)
			r.Sets = append(r.Sets, name)
			r.Sizes[name] = int32(n)
			left -= n
			if _, err := cs.AppsV1().StatefulSets(r.NS).Create(ctx, benchStatefulSet(name, int32(n)), metav1.CreateOptions{}); err != nil {
				return nil, err
			}
		}
	}
	if err := waitFor(ctx, env, o.ReadyTimeout, "pods Ready", func() (int, int, error) {
		if err := checkAlive(ctrl, fl); err != nil {
			return 0, 0, err
		}
		ready := 0
		for _, ns := range namespaces {
			list, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return 0, 0, err
			}
			for _, s := range list.Items {
				ready += int(s.Status.ReadyReplicas)
			}
		}
		return ready, o.Pods * len(runs), nil
	}); err != nil {
		return nil, err
	}
	readyTook := time.Since(readyStart)
	env.logf("%d pods Ready in %s", o.Pods*len(runs), readyTook.Round(time.Second))

	// Where APF puts each client.
	names, err := pfNames(ctx, cs)
	if err != nil {
		return nil, err
	}
	classes := map[string]pfClass{}
	saCfg, err := c.ServiceAccountConfig(ctx, rollbookSystem, rollbookSA)
	if err != nil {
		return nil, err
	}
	for who, cfg := range map[string]*rest.Config{"rollbook": saCfg, "admin": c.Config()} {
		if classes[who], err = classOf(ctx, cfg, runs[0].NS, names); err != nil {
			return nil, fmt.Errorf("APF class of %s: %w", who, err)
		}
	}
	m, err := apiserverMetrics(ctx, c)
	if err != nil {
		return nil, err
	}
	nominal, current := seatsByLevel(m, "nominal_limit_seats"), seatsByLevel(m, "current_limit_seats")

	self := os.Getpid()
	for _, r := range runs {
		alive := func() error { return checkAlive(ctrl, fl) }
		var hooks rollHooks
		hooks.BeforeStart = func() error {
			if r.Loaded {
				if err := r.runBaseline(ctx, env, c, load, ctrl, o, *baseline); err != nil {
					return err
				}
			}
			r.cpu0, r.bench0 = cpuOf(c, fl, ctrl), procCPU(self)
			r.tenants0 = load.snapshot()
			var err error
			r.m0, err = apiserverMetrics(ctx, c)
			return err
		}
		hooks.AfterEnd = func() error {
			m1, err := apiserverMetrics(ctx, c)
			r.m1 = m1
			r.cpu1, r.bench1 = cpuOf(c, fl, ctrl), procCPU(self)
			r.tenants1 = load.snapshot()
			if r.Loaded {
				env.logf("%s: stopping the tenants", r.Name)
				load.stop()
			}
			return err
		}
		err := rollPods(ctx, env, c, &r.peerRun, o, r.NS, ctrl, func() error {
			return startRollouts(ctx, cs, dyn, r.NS, r.Sets, o.MaxUnavailable)
		}, func() (int, bool, error) {
			if err := alive(); err != nil {
				return 0, false, err
			}
			return rolloutProgress(ctx, dyn, r.NS, r.Sizes)
		}, hooks)
		if err != nil {
			load.stop()
			return nil, fmt.Errorf("%s: %w\ncontroller log:\n%s", r.Name, err, cluster.Tail(ctrl.Log, 20))
		}
	}
	ctrl.Stop(10 * time.Second)
	for _, r := range runs {
		if r.Loop, err = analyzeJournal(ctx, filepath.Join(ctrlDir, "journal"), r.Start, r.End, nil); err != nil {
			return nil, fmt.Errorf("reading the controller's journal: %w", err)
		}
	}

	env.logf("reading the audit log")
	if err := c.SyncAuditLog(ctx, time.Minute); err != nil {
		return nil, err
	}
	if err := countTenantsAudit(c.AuditLog, runs); err != nil {
		return nil, err
	}
	if st, err := os.Stat(c.AuditLog); err == nil {
		env.logf("audit log: %.0f MiB", float64(st.Size())/(1<<20))
	}

	res := &tenantsResult{
		Runs: runs, Opts: o, Tenants: tl, Nodes: *nodes, Fleet: fl.Kind, Controller: controller, ReadyTook: readyTook,
		Classes: classes, TenantClasses: named(load.classes(), names), Nominal: nominal, Current: current,
	}
	res.print(env)
	return res.summary(), nil
}

// tenantsRun is one of the two rollouts and what was measured around it.
type tenantsRun struct {
	peerRun
	NS     string
	Loaded bool // the tenants run during this rollout
	Sets   []string
	Sizes  map[string]int32

	// With the tenants running, before the rollout: their window alone,
	// and the write capacity left to 16 more writers.
	BaseStart, BaseEnd time.Time
	BaseM0, BaseM1     scraped
	CapLoaded          capacityRun

	m0, m1             scraped            // the apiserver's metrics at the change and at the end
	cpu0, cpu1         map[string]float64 // every process's CPU-seconds then
	bench0, bench1     float64            // this process's (the tenants' clients)
	tenants0, tenants1 tenantCounts

	Rollbook, Tenants, TenantsBase auditStats // from the audit log: rollout window; tenants' baseline
	Loop                           loopStats  // the controller's journal during the rollout
}

// runBaseline starts the tenants, lets them run alone for d (their
// baseline), measures the write capacity left with them running, and
// waits until the controller has drained that loop's label events.
func (r *tenantsRun) runBaseline(ctx context.Context, env *benchEnv, c *cluster.Cluster, load *tenantLoad, ctrl *cluster.Process, o compareOpts, d time.Duration) error {
	env.logf("%s: starting the tenants; %s alone", r.Name, d)
	load.start()
	select { // a moment to open connections and reach pace
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(3 * time.Second):
	}
	var err error
	if r.BaseM0, err = apiserverMetrics(ctx, c); err != nil {
		return err
	}
	r.BaseStart = time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	r.BaseEnd = time.Now()
	if r.BaseM1, err = apiserverMetrics(ctx, c); err != nil {
		return err
	}
	pods, err := podUIDs(ctx, c.Clientset(), r.NS)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(pods))
	for n := range pods {
		names = append(names, n)
	}
	sort.Strings(names)
	if r.CapLoaded, err = writeCapacity(ctx, c, r.NS, names, o.CapWorkers, o.CapSeconds, o.CapMax); err != nil {
		return err
	}
	env.logf("%s: apiserver write capacity with the tenants running: %.0f writes/s (%d writes, %d errors)", r.Name, r.CapLoaded.rate(), r.CapLoaded.Writes, r.CapLoaded.Errors)
	return waitQuiet(ctx, ctrl.Pid(), 30*time.Second)
}

// startRollouts changes each StatefulSet's app image to v2 and creates its
// InPlaceRollout, as `bench rollout` does.
func startRollouts(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ns string, sets []string, maxUnavailable string) error {
	for _, name := range sets {
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"` + imageV2 + `"}]}}}}`
		if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return err
		}
	}
	for _, name := range sets {
		if _, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(ns).Create(ctx, benchRollout(name, maxUnavailable, 0), metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// rolloutProgress reads ns's InPlaceRollouts: pods updated and Ready, and
// whether every rollout Succeeded; a Failed rollout or a failed pod is an
// error.
func rolloutProgress(ctx context.Context, dyn dynamic.Interface, ns string, sizes map[string]int32) (int, bool, error) {
	list, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, false, err
	}
	done, succeeded := 0, 0
	for _, u := range list.Items {
		st, _, _ := unstructured.NestedMap(u.Object, "status")
		phase, _ := st["phase"].(string)
		ready, _ := st["updatedReady"].(int64)
		if failed, _ := st["failed"].(int64); phase == "Failed" || failed > 0 {
			return 0, false, fmt.Errorf("rollout %s: phase %s, failed %d, conditions %v", u.GetName(), phase, failed, st["conditions"])
		}
		if phase == "Succeeded" {
			succeeded++
			done += int(sizes[strings.TrimSuffix(u.GetName(), "-v2")])
			continue
		}
		done += int(ready)
	}
	return done, succeeded == len(sizes), nil
}

type tenantOpts struct {
	Tenants, Writers, Listers, ConfigMaps int
}

// tenantUserPrefix is every tenant's user: tenant i is the ServiceAccount
// tenant-i of namespace tenant-i.
const tenantUserPrefix = "system:serviceaccount:tenant-"

// tenantLoad is the other tenants: per tenant a ServiceAccount with a
// Role on its own namespace's ConfigMaps, writer goroutines merge-patching
// them and lister goroutines listing them, each as fast as it gets
// answers (no client-side rate limit; client-go's own retries of 429s
// stay on).
type tenantLoad struct {
	opts     tenantOpts
	clients  []kubernetes.Interface
	recs     []*pfRecorder
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ctx      context.Context
	writes   atomic.Int64
	lists    atomic.Int64
	failures atomic.Int64
}

// tenantCounts are the tenants' operations so far, as the clients saw
// them: writes and lists that succeeded, calls that failed (after
// client-go's retries), and every response by status code.
type tenantCounts struct {
	Writes, Lists, Failures int64
	Codes                   map[int]int64
}

func newTenantLoad(ctx context.Context, c *cluster.Cluster, o tenantOpts) (*tenantLoad, error) {
	cs := c.Clientset()
	l := &tenantLoad{opts: o}
	data := map[string]string{"payload": strings.Repeat("x", 1024)}
	for i := range o.Tenants {
		ns := fmt.Sprintf("tenant-%d", i)
		if err := createNamespace(ctx, cs, ns); err != nil {
			return nil, err
		}
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "configmaps"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}}},
		}
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "configmaps"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "configmaps"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ns, Namespace: ns}},
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		for j := range o.ConfigMaps {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", j)}, Data: data}
			if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
		}
		cfg, err := c.ServiceAccountConfig(ctx, ns, ns)
		if err != nil {
			return nil, err
		}
		cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
		cfg.UserAgent = "bench-tenant/" + ns
		l.recs = append(l.recs, recordPF(cfg))
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		l.clients = append(l.clients, client)
	}
	return l, nil
}

// start starts every tenant's goroutines; stop ends them.
func (l *tenantLoad) start() {
	l.ctx, l.cancel = context.WithCancel(context.Background())
	for i, client := range l.clients {
		ns := fmt.Sprintf("tenant-%d", i)
		for w := range l.opts.Writers {
			l.wg.Go(func() {
				for seq := 0; l.ctx.Err() == nil; seq++ {
					name := fmt.Sprintf("cm-%03d", (w+seq*l.opts.Writers)%l.opts.ConfigMaps)
					patch := fmt.Sprintf(`{"data":{"seq":"%d-%d"}}`, w, seq)
					_, err := client.CoreV1().ConfigMaps(ns).Patch(l.ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
					l.count(err, &l.writes)
				}
			})
		}
		for range l.opts.Listers {
			l.wg.Go(func() {
				for l.ctx.Err() == nil {
					_, err := client.CoreV1().ConfigMaps(ns).List(l.ctx, metav1.ListOptions{})
					l.count(err, &l.lists)
				}
			})
		}
	}
}

func (l *tenantLoad) count(err error, ok *atomic.Int64) {
	switch {
	case err == nil:
		ok.Add(1)
	case l.ctx.Err() == nil:
		l.failures.Add(1)
	}
}

func (l *tenantLoad) stop() {
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
	}
}

func (l *tenantLoad) snapshot() tenantCounts {
	t := tenantCounts{Writes: l.writes.Load(), Lists: l.lists.Load(), Failures: l.failures.Load(), Codes: map[int]int64{}}
	for _, r := range l.recs {
		codes, _ := r.snapshot()
		for k, v := range codes {
			t.Codes[k] += v
		}
	}
	return t
}

// classes is where APF put the tenants' requests, by UID.
func (l *tenantLoad) classes() map[pfClass]int64 {
	out := map[pfClass]int64{}
	for _, r := range l.recs {
		_, cl := r.snapshot()
		for k, v := range cl {
			out[k] += v
		}
	}
	return out
}

// auditStats are one client's requests in a window, from the audit log.
type auditStats struct {
	counts  map[cluster.AuditKey]int64
	Latency []time.Duration // every request but watches: received → response complete
	// Slow requests (over 500 ms) carry the apiserver's latency by layer;
	// QueueWait is their time in APF's queues (0 when none was noted).
	Slow      int
	QueueWait []time.Duration
	From, To  time.Time
}

func (a *auditStats) add(e *cluster.AuditEvent) {
	if a.counts == nil {
		a.counts = map[cluster.AuditKey]int64{}
	}
	a.counts[cluster.AuditKey{UserAgent: e.UserAgent, User: e.User.Username, Verb: e.Verb, Resource: e.Resource(), Code: e.Code()}]++
	if e.Verb == "watch" {
		return
	}
	d := e.StageTimestamp.Sub(e.RequestReceivedTimestamp)
	a.Latency = append(a.Latency, d)
	if d > 500*time.Millisecond {
		a.Slow++
		w, _ := time.ParseDuration(e.Annotations["apiserver.latency.k8s.io/apf-queue-wait"])
		a.QueueWait = append(a.QueueWait, w)
	}
}

func (a *auditStats) requests() requestCounts { return requestsFrom(a.counts) }

// total is every request that got an answer, watches included.
func (a *auditStats) total() int64 {
	var n int64
	for _, v := range a.counts {
		n += v
	}
	return n
}

func (a *auditStats) rate() float64 { return float64(a.total()) / a.To.Sub(a.From).Seconds() }

// byVerb is the requests of one verb per second.
func (a *auditStats) byVerb(verb string) float64 {
	var n int64
	for k, v := range a.counts {
		if k.Verb == verb {
			n += v
		}
	}
	return float64(n) / a.To.Sub(a.From).Seconds()
}

func (a *auditStats) code(code int) int64 {
	var n int64
	for k, v := range a.counts {
		if k.Code == code {
			n += v
		}
	}
	return n
}

func (a *auditStats) latency(q float64) time.Duration { return quantile(a.Latency, q) }

func (a *auditStats) maxQueueWait() time.Duration { return quantile(a.QueueWait, 1) }

// quantile is the q-quantile of ds (nearest rank; 0 when empty).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// countTenantsAudit reads the audit log once: Rollbook's and the tenants'
// requests during each rollout, and the tenants' during their baseline.
func countTenantsAudit(path string, runs []*tenantsRun) error {
	for _, r := range runs {
		r.Rollbook = auditStats{From: r.Start, To: r.End}
		r.Tenants = auditStats{From: r.Start, To: r.End}
		r.TenantsBase = auditStats{From: r.BaseStart, To: r.BaseEnd}
	}
	in := func(t time.Time, a *auditStats) bool { return !t.Before(a.From) && !t.After(a.To) }
	return cluster.ReadAuditLog(path, func(e *cluster.AuditEvent) error {
		if e.Stage != "ResponseComplete" {
			return nil
		}
		t, user := e.RequestReceivedTimestamp, e.User.Username
		for _, r := range runs {
			switch {
			case user == rollbookUser && in(t, &r.Rollbook):
				r.Rollbook.add(e)
			case strings.HasPrefix(user, tenantUserPrefix) && in(t, &r.Tenants):
				r.Tenants.add(e)
			case strings.HasPrefix(user, tenantUserPrefix) && r.Loaded && in(t, &r.TenantsBase):
				r.TenantsBase.add(e)
			}
		}
		return nil
	})
}

type tenantsResult struct {
	Runs       []*tenantsRun
	Opts       compareOpts
	Tenants    tenantOpts
	Nodes      int
	Fleet      string
	Controller string
	ReadyTook  time.Duration
	// Classes is where APF put Rollbook's and the admin's requests (the
	// control plane's components and the simulated kubelets run as the
	// admin); TenantClasses the tenants' requests by class.
	Classes          map[string]pfClass
	TenantClasses    map[pfClass]int64
	Nominal, Current map[string]float64 // seats by PriorityLevel
}

func (r *tenantsRun) capacity() float64 { return (r.CapBefore.rate() + r.CapAfter.rate()) / 2 }

func (r *tenantsRun) ratio(pods int) float64 { return r.rate(pods) / (r.capacity() / 3) }

func (r *tenantsRun) cpu() map[string]float64 {
	out := map[string]float64{"bench (tenants' clients)": round(r.bench1-r.bench0, 1)}
	for k, v := range r.cpu1 {
		out[k] = round(v-r.cpu0[k], 1)
	}
	return out
}

// tenantClientCodes is the responses the tenants' clients got during the
// rollout, by status code.
func (r *tenantsRun) tenantClientCodes() map[int]int64 {
	out := map[int]int64{}
	for k, v := range r.tenants1.Codes {
		if d := v - r.tenants0.Codes[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func (res *tenantsResult) print(env *benchEnv) {
	o, t := res.Opts, res.Tenants
	a, b := res.Runs[0], res.Runs[1]
	fmt.Printf("\ntenants: the same in-place rollout twice on one control plane (default admission plugins and API Priority and Fairness, audit log on): %d pods (StatefulSets of 2 containers, OnDelete, readiness gate; one InPlaceRollout each, maxUnavailable %s, grace 0, scatter zone) on %d %s nodes (3 zones); first alone, then while %d tenants (each its own ServiceAccount and namespace, %d writers patching and %d listers listing its %d ConfigMaps, no client-side limit) load the apiserver\n",
		o.Pods, o.MaxUnavailable, res.Nodes, res.Fleet, t.Tenants, t.Writers, t.Listers, t.ConfigMaps)
	printMachine(env)
	fmt.Printf("  controller: %s; %d pods in two namespaces created and Ready in %s\n", res.Controller, 2*o.Pods, res.ReadyTook.Round(time.Second))
	fmt.Printf("  APF: Rollbook → %s; tenants → %s; admin (controller-manager, scheduler, simulated kubelets) → %s\n",
		res.Classes["rollbook"], fmtClasses(res.TenantClasses), res.Classes["admin"])
	fmt.Printf("  APF seats by priority level, nominal (current): %s\n", fmtSeats(res.Nominal, res.Current))
	row := func(what, x, y string) { fmt.Printf("  %-58s %-24s %s\n", what, x, y) }
	f := fmt.Sprintf
	ms := func(d time.Duration) string { return f("%.0f", float64(d)/float64(time.Millisecond)) }
	n := o.Pods
	row("", a.Name, b.Name)
	row("rollout: change → every pod updated and Ready", f("%.1f s", a.took().Seconds()), f("%.1f s", b.took().Seconds()))
	row("pods/s (10 → 90 % of pods)", f("%.1f (%.1f)", a.rate(n), a.steady(n)), f("%.1f (%.1f)", b.rate(n), b.steady(n)))
	row("write capacity, nothing else running: before / after", f("%.0f / %.0f w/s", a.CapBefore.rate(), a.CapAfter.rate()), f("%.0f / %.0f w/s", b.CapBefore.rate(), b.CapAfter.rate()))
	row("pods/s ÷ (capacity/3)", f("%.2f", a.ratio(n)), f("%.2f", b.ratio(n)))
	row("write capacity with the tenants running → pods/s ÷ (it/3)", "—", f("%.0f w/s → %.2f", b.CapLoaded.rate(), b.rate(n)/(b.CapLoaded.rate()/3)))
	for _, x := range []struct {
		what string
		fn   func(r *tenantsRun) string
	}{
		{"Rollbook pod writes per pod (audit log); succeeded", func(r *tenantsRun) string {
			q := r.Rollbook.requests()
			return f("%.2f; %.2f", q.podWritesPerPod(n), float64(q.PodWritesOK)/float64(n))
		}},
		{"Rollbook requests (watches too) / 429 / 409", func(r *tenantsRun) string {
			return f("%d / %d / %d", r.Rollbook.total(), r.Rollbook.code(429), r.Rollbook.code(409))
		}},
		{"Rollbook latency p50 / p99 / max, ms (audit, no watches)", func(r *tenantsRun) string {
			return f("%s / %s / %s", ms(r.Rollbook.latency(0.5)), ms(r.Rollbook.latency(0.99)), ms(r.Rollbook.latency(1)))
		}},
		{"Rollbook requests > 500 ms; longest APF queue wait of those", func(r *tenantsRun) string {
			return f("%d; %s ms", r.Rollbook.Slow, ms(r.Rollbook.maxQueueWait()))
		}},
		{"journal: intents / succeeded / failed", func(r *tenantsRun) string {
			return f("%d / %d / %d", r.Loop.Intents, r.Loop.Succeeded, r.Loop.Failed)
		}},
		{"pod cycle, gate intended → ungate succeeded, median (p90)", func(r *tenantsRun) string {
			return f("%.2f s (%.2f)", r.Loop.Cycle.Median.Seconds(), r.Loop.Cycle.P90.Seconds())
		}},
		{"pods after: on v2 / Ready / recreated", func(r *tenantsRun) string { return f("%d / %d / %d", r.Updated, r.Ready, r.Recreated) }},
		{"tenants alone (baseline): requests/s (patch, list)", func(r *tenantsRun) string { return tenantRates(&r.TenantsBase, r.Loaded) }},
		{"tenants during the rollout: requests/s (patch, list)", func(r *tenantsRun) string { return tenantRates(&r.Tenants, r.Loaded) }},
		{"tenants alone: 429 / latency p50 / p99, ms", func(r *tenantsRun) string { return tenantLatency(&r.TenantsBase, r.Loaded) }},
		{"tenants during the rollout: 429 / latency p50 / p99, ms", func(r *tenantsRun) string { return tenantLatency(&r.Tenants, r.Loaded) }},
		{"tenants during the rollout: slow (> 500 ms); longest APF wait", func(r *tenantsRun) string {
			if !r.Loaded {
				return "—"
			}
			return f("%d; %s ms", r.Tenants.Slow, ms(r.Tenants.maxQueueWait()))
		}},
		{"CPU-s during the rollout: rollbook / apiserver / tenants", func(r *tenantsRun) string {
			c := r.cpu()
			return f("%.1f / %.1f / %.1f", c["rollbook"], c["kube-apiserver"], c["bench (tenants' clients)"])
		}},
		{"load average (1 min) at start → end of rollout", func(r *tenantsRun) string {
			l0, _, _ := strings.Cut(r.Load0, " ")
			l1, _, _ := strings.Cut(r.Load1, " ")
			return l0 + " → " + l1
		}},
	} {
		row(x.what, x.fn(a), x.fn(b))
	}
	for _, r := range res.Runs {
		fmt.Printf("  %s: APF during the rollout (%.0f s), by flow schema → priority level: dispatched, rejected, queue wait mean / p99 bucket\n", r.Name, r.took().Seconds())
		printAPF(apfDiff(r.m0, r.m1))
		if r.Loaded {
			fmt.Printf("  %s: APF during the tenants' baseline (%.0f s)\n", r.Name, r.BaseEnd.Sub(r.BaseStart).Seconds())
			printAPF(apfDiff(r.BaseM0, r.BaseM1))
			fmt.Printf("  %s: the tenants' clients during the rollout: responses by code %v; failed calls (after client-go's retries) %d\n",
				r.Name, r.tenantClientCodes(), r.tenants1.Failures-r.tenants0.Failures)
		}
		fmt.Printf("  %s: Rollbook's requests during the rollout: %s\n", r.Name, fmtCounts(r.Rollbook.requests().ByKey))
		fmt.Printf("  %s: CPU-seconds during the rollout: %s (wall %.0f s, 2 cores = %.0f CPU-s)\n", r.Name, fmtFloats(r.cpu()), r.took().Seconds(), 2*r.took().Seconds())
		if r.Updated != n || r.Ready != n || r.Recreated != 0 || r.Loop.Failed != 0 {
			fmt.Printf("  WARNING: %s: %d of %d pods updated, %d Ready, %d recreated; %d failed actions %v\n", r.Name, r.Updated, n, r.Ready, r.Recreated, r.Loop.Failed, r.Loop.FailedByClass)
		}
	}
	fmt.Printf("  with tenants ÷ alone: %.2f× the pods/s, %.2f× Rollbook's p99 latency\n",
		b.rate(n)/a.rate(n), float64(b.Rollbook.latency(0.99))/float64(max(a.Rollbook.latency(0.99), 1)))
}

func tenantRates(a *auditStats, loaded bool) string {
	if !loaded {
		return "—"
	}
	return fmt.Sprintf("%.0f (%.0f, %.0f)", a.rate(), a.byVerb("patch"), a.byVerb("list"))
}

func tenantLatency(a *auditStats, loaded bool) string {
	if !loaded {
		return "—"
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return fmt.Sprintf("%d / %.0f / %.0f", a.code(429), ms(a.latency(0.5)), ms(a.latency(0.99)))
}

func printAPF(rows []*apfRow) {
	for _, r := range rows {
		fmt.Printf("    %-52s %8.0f  rejected %-6.0f wait %.1f ms / ≤%g s  %v\n",
			r.Class, r.Dispatched, r.rejected(), 1000*r.waitMean(), r.waitQuantile(0.99), fmtRejected(r.Rejected))
	}
}

func fmtRejected(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func fmtClasses(m map[pfClass]int64) string {
	var parts []string
	for c, n := range m {
		parts = append(parts, fmt.Sprintf("%s (%d responses)", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func fmtSeats(nominal, current map[string]float64) string {
	keys := make([]string, 0, len(nominal))
	for k := range nominal {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f (%.0f)", k, nominal[k], current[k]))
	}
	return strings.Join(parts, ", ")
}

func (res *tenantsResult) summary() map[string]any {
	n := res.Opts.Pods
	runs := map[string]any{}
	for _, r := range res.Runs {
		q := r.Rollbook.requests()
		m := map[string]any{
			"namespace": r.NS, "rollout_s": round(r.took().Seconds(), 1),
			"pods_per_s": round(r.rate(n), 2), "pods_per_s_10_90": round(r.steady(n), 2),
			"capacity_before": round(r.CapBefore.rate(), 0), "capacity_after": round(r.CapAfter.rate(), 0),
			"ratio_vs_capacity_over_3": round(r.ratio(n), 2),
			"rollbook": map[string]any{
				"pod_writes_per_pod": round(q.podWritesPerPod(n), 2), "pod_writes_ok": q.PodWritesOK,
				"requests": r.Rollbook.total(), "throttled_429": r.Rollbook.code(429), "conflicts_409": r.Rollbook.code(409),
				"latency_ms_p50": ms(r.Rollbook.latency(0.5)), "latency_ms_p99": ms(r.Rollbook.latency(0.99)), "latency_ms_max": ms(r.Rollbook.latency(1)),
				"slow_over_500ms": r.Rollbook.Slow, "max_apf_queue_wait_ms": ms(r.Rollbook.maxQueueWait()), "by_key": q.ByKey,
			},
			"journal": map[string]any{"intents": r.Loop.Intents, "succeeded": r.Loop.Succeeded, "failed": r.Loop.Failed, "failed_by_class": r.Loop.FailedByClass,
				"cycle_median_s": round(r.Loop.Cycle.Median.Seconds(), 3), "cycle_p90_s": round(r.Loop.Cycle.P90.Seconds(), 3)},
			"updated": r.Updated, "ready": r.Ready, "recreated": r.Recreated,
			"cpu_seconds": r.cpu(), "load_at_start": r.Load0, "load_at_end": r.Load1,
			"apf": apfSummary(apfDiff(r.m0, r.m1)),
		}
		if r.Loaded {
			m["capacity_with_tenants"] = round(r.CapLoaded.rate(), 0)
			m["tenants"] = tenantSummary(&r.Tenants)
			m["tenants_baseline"] = tenantSummary(&r.TenantsBase)
			m["tenants_baseline_apf"] = apfSummary(apfDiff(r.BaseM0, r.BaseM1))
			m["tenants_client_codes"] = r.tenantClientCodes()
			m["tenants_failed_calls"] = r.tenants1.Failures - r.tenants0.Failures
		}
		runs[r.Name] = m
	}
	classes := map[string]string{"rollbook": res.Classes["rollbook"].String(), "admin": res.Classes["admin"].String()}
	for c := range res.TenantClasses {
		classes["tenants"] = c.String()
	}
	return map[string]any{
		"pods": n, "nodes": res.Nodes, "fleet": res.Fleet, "controller": res.Controller,
		"tenants": res.Tenants.Tenants, "tenant_writers": res.Tenants.Writers, "tenant_listers": res.Tenants.Listers,
		"apf_classes": classes, "apf_nominal_seats": res.Nominal,
		"runs":             runs,
		"ratio_pods_per_s": round(res.Runs[1].rate(n)/res.Runs[0].rate(n), 2),
	}
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 1) }

func tenantSummary(a *auditStats) map[string]any {
	return map[string]any{
		"requests_per_s": round(a.rate(), 1), "patch_per_s": round(a.byVerb("patch"), 1), "list_per_s": round(a.byVerb("list"), 1),
		"throttled_429": a.code(429), "latency_ms_p50": ms(a.latency(0.5)), "latency_ms_p99": ms(a.latency(0.99)),
		"slow_over_500ms": a.Slow, "max_apf_queue_wait_ms": ms(a.maxQueueWait()),
	}
}

func apfSummary(rows []*apfRow) []map[string]any {
	var out []map[string]any
	for _, r := range rows {
		out = append(out, map[string]any{
			"flow_schema": r.Class.FlowSchema, "priority_level": r.Class.PriorityLevel,
			"dispatched": r.Dispatched, "rejected": r.Rejected,
			"wait_mean_ms": round(1000*r.waitMean(), 2), "wait_p99_bucket_s": r.waitQuantile(0.99),
		})
	}
	return out
}
