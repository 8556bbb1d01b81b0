package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// shardsCmd runs docs/scale.md's sharded deployment on one machine: one
// control plane and kwok fleet, N namespaces shard-0..N-1 of one
// StatefulSet each, and N `rollbook run` processes, each scoped to its
// namespace (--namespaces), with its own journal, metrics port and
// ServiceAccount, at the binary's shipped defaults otherwise. Every shard's
// template change and InPlaceRollout are made at the same moment; each
// shard is timed from its own change to its rollout's Succeeded.
//
// Writes are counted from the apiserver's audit log by user: each shard
// runs as its own ServiceAccount (rollbook-system/rollbook-shard-i, bound
// to deploy/rbac.yaml's ClusterRole), because all shards share one user
// agent. The controllers' own /metrics (rollbook_api_writes_total) are read
// as well, as a cross-check.
//
// After the rollout the controllers are stopped and each shard's journal is
// checked alone: `rollbook journal verify`, its journal ID, which
// namespaces its records name, that no record hash appears in two shards'
// journals, and `rollbook replay --dir` (one shard at a time, then all at
// once, as a fleet's replay would run).
//
// NB: each shard runs with --no-nats unless --nats (then each embeds its
// own server under its work directory). The bench does not run N shards on
// one JetStream server (--stream and --subject-prefix per shard).
func shardsCmd(ctx context.Context, env *benchEnv, args []string) (map[string]any, error) {
	fs := newFlags("shards")
	n := fs.Int("shards", 3, "controllers, each on its own namespace shard-i")
	perShard := fs.Int("pods-per-shard", 1000, "pods of each shard's StatefulSet")
	nodes := fs.Int("nodes", 30, "simulated nodes (3 zones), shared by every shard")
	maxUnavailable := fs.String("max-unavailable", "10%", "each rollout's maxUnavailable")
	grace := fs.Int("grace", 0, "each rollout's gracePeriodSeconds")
	capSeconds := fs.Duration("capacity-time", 10*time.Second, "how long each write-capacity loop runs")
	capWorkers := fs.Int("capacity-workers", 16, "parallel writers of the write-capacity loop, spread over the shards' pods")
	capMax := fs.Int("capacity-max", 20000, "most writes of one write-capacity loop")
	qps := fs.Int("kube-api-qps", 0, "each controller's --kube-api-qps (0: the binary's default)")
	burst := fs.Int("kube-api-burst", 0, "each controller's --kube-api-burst (0: the binary's default)")
	workers := fs.Int("workers", 0, "each controller's --workers (0: the binary's default)")
	withNATS := fs.Bool("nats", false, "run each controller with its own embedded NATS outbox (default --no-nats)")
	audit := fs.Bool("audit", true, "count writes from the apiserver's audit log (off: from the controllers' /metrics only)")
	binary := fs.String("binary", "", "a built rollbook binary (default: go build ./cmd/rollbook)")
	kwokWorkers := fs.Int("kwok-parallelism", 16, "kwok's pod stage workers")
	readyTimeout := fs.Duration("ready-timeout", 20*time.Minute, "bound on creating the pods and their becoming Ready")
	timeout := fs.Duration("timeout", 20*time.Minute, "bound on the rollouts")
	keep := fs.Bool("keep", false, "keep the work directory (logs, journals, audit log)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *n <= 0 || *perShard <= 0 || *nodes <= 0 {
		return nil, errors.New("--shards, --pods-per-shard and --nodes must be positive")
	}
	total := *n * *perShard
	root, cleanup, err := env.workDir("shards", *keep)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	bin, err := buildRollbook(ctx, env, root, *binary)
	if err != nil {
		return nil, err
	}

	c, fl, stop, err := startGround(ctx, env, root, cluster.Options{AuditLog: *audit}, fleet.Options{Parallelism: *kwokWorkers}, *nodes)
	if err != nil {
		return nil, err
	}
	defer stop()
	cs := c.Clientset()
	dyn := dynamic.NewForConfigOrDie(c.Config())
	if err := installRollbook(ctx, c); err != nil {
		return nil, err
	}

	shards := make([]*shard, *n)
	for i := range shards {
		s := &shard{Index: i, NS: fmt.Sprintf("shard-%d", i), SA: fmt.Sprintf("rollbook-shard-%d", i), Dir: filepath.Join(root, fmt.Sprintf("shard-%d", i))}
		s.User = "system:serviceaccount:rollbook-system:" + s.SA
		shards[i] = s
		if err := os.MkdirAll(s.Dir, 0o755); err != nil {
			return nil, err
		}
		if err := createNamespace(ctx, cs, s.NS); err != nil {
			return nil, err
		}
		kubeconfig, err := shardIdentity(ctx, c, s)
		if err != nil {
			return nil, err
		}
		ctrl, metricsURL, err := startRollbook(ctx, env, rollbookRun{
			Bin: bin, Dir: s.Dir, Kubeconfig: kubeconfig, Namespace: s.NS,
			QPS: *qps, Burst: *burst, Workers: *workers, NATS: *withNATS,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.NS, err)
		}
		defer ctrl.Stop(10 * time.Second)
		s.Ctrl, s.MetricsURL = ctrl, metricsURL
	}
	alive := func() error {
		for _, s := range shards {
			if err := checkAlive(s.Ctrl, fl); err != nil {
				return fmt.Errorf("%s: %w", s.NS, err)
			}
		}
		return nil
	}

	env.logf("creating %d StatefulSets of %d pods (one per shard), waiting until Ready", *n, *perShard)
	readyStart := time.Now()
	for _, s := range shards {
		if _, err := cs.AppsV1().StatefulSets(s.NS).Create(ctx, benchStatefulSet("web", int32(*perShard)), metav1.CreateOptions{}); err != nil {
			return nil, err
		}
	}
	if err := waitFor(ctx, env, *readyTimeout, "pods Ready", func() (int, int, error) {
		if err := alive(); err != nil {
			return 0, 0, err
		}
		ready := 0
		for _, s := range shards {
			sts, err := cs.AppsV1().StatefulSets(s.NS).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return 0, 0, err
			}
			ready += int(sts.Status.ReadyReplicas)
		}
		return ready, total, nil
	}); err != nil {
		return nil, err
	}
	readyTook := time.Since(readyStart)
	env.logf("%d pods Ready in %s", total, readyTook.Round(time.Second))
	for _, s := range shards {
		if s.UIDs, err = podUIDs(ctx, cs, s.NS); err != nil {
			return nil, err
		}
	}

	capBefore, err := shardedCapacity(ctx, c, shards, *capWorkers, *capSeconds, *capMax)
	if err != nil {
		return nil, err
	}
	env.logf("apiserver write capacity before: %.0f writes/s (%d writes, %d errors)", capBefore.rate(), capBefore.Writes, capBefore.Errors)
	// Each controller sees the capacity loop's label events on its pods;
	// the rollouts start once every one has drained them.
	for _, s := range shards {
		if err := waitQuiet(ctx, s.Ctrl.Pid(), 30*time.Second); err != nil {
			return nil, err
		}
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	for _, s := range shards {
		if s.m0, err = scrapeMetrics(ctx, hc, s.MetricsURL); err != nil {
			return nil, err
		}
		s.cpu0 = procCPU(s.Ctrl.Pid())
	}
	others0 := cpuOf(c, fl, shards[0].Ctrl)
	load0 := loadAvg()
	env.logf("rolling app:v1 → app:v2 in place: %d shards at once, one InPlaceRollout each (maxUnavailable %s, grace %ds, scatter zone)", *n, *maxUnavailable, *grace)
	rollStart := time.Now()
	if err := startShardRollouts(ctx, cs, dyn, shards, *maxUnavailable, *grace); err != nil {
		return nil, err
	}
	var t10, t90 time.Duration
	err = waitFor(ctx, env, *timeout, "pods updated and Ready", func() (int, int, error) {
		if err := alive(); err != nil {
			return 0, 0, err
		}
		done, succeeded := 0, 0
		for _, s := range shards {
			if !s.End.IsZero() {
				done += *perShard
				succeeded++
				continue
			}
			u, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(s.NS).Get(ctx, "web-v2", metav1.GetOptions{})
			if err != nil {
				return 0, 0, err
			}
			st, _, _ := unstructured.NestedMap(u.Object, "status")
			phase, _ := st["phase"].(string)
			ready, _ := st["updatedReady"].(int64)
			if failed, _ := st["failed"].(int64); phase == "Failed" || failed > 0 {
				return 0, 0, fmt.Errorf("%s: rollout %s: phase %s, failed %d, conditions %v", s.NS, u.GetName(), phase, failed, st["conditions"])
			}
			if phase == "Succeeded" {
				s.End = time.Now()
				s.Load1 = loadAvg()
				s.CPU = procCPU(s.Ctrl.Pid()) - s.cpu0
				done += *perShard
				succeeded++
				continue
			}
			done += int(ready)
		}
		el := time.Since(rollStart)
		if t10 == 0 && done >= total/10 {
			t10 = el
		}
		if t90 == 0 && done >= total*9/10 {
			t90 = el
		}
		if succeeded < len(shards) {
			done = min(done, total-1) // not done until every rollout says so
		}
		return done, total, nil
	})
	rollEnd := time.Now()
	if err != nil {
		var logs strings.Builder
		for _, s := range shards {
			fmt.Fprintf(&logs, "\n%s controller log:\n%s", s.NS, cluster.Tail(s.Ctrl.Log, 10))
		}
		return nil, fmt.Errorf("%w%s", err, logs.String())
	}
	took := rollEnd.Sub(rollStart)
	load1 := loadAvg()
	others1 := cpuOf(c, fl, shards[0].Ctrl)
	env.logf("every rollout Succeeded in %s (%.1f pods/s in all)", took.Round(100*time.Millisecond), float64(total)/took.Seconds())

	for _, s := range shards {
		if s.m1, err = scrapeMetrics(ctx, hc, s.MetricsURL); err != nil {
			return nil, err
		}
		if err := s.checkPods(ctx, cs); err != nil {
			return nil, err
		}
	}
	capAfter, err := shardedCapacity(ctx, c, shards, *capWorkers, *capSeconds, *capMax)
	if err != nil {
		return nil, err
	}
	env.logf("apiserver write capacity after: %.0f writes/s (%d writes, %d errors)", capAfter.rate(), capAfter.Writes, capAfter.Errors)
	for _, s := range shards {
		s.PeakRSSKiB, _ = procStatusKB(s.Ctrl.Pid(), "VmHWM")
	}
	for _, s := range shards {
		s.Ctrl.Stop(10 * time.Second)
		if exited, werr := s.Ctrl.Exited(); exited && werr != nil {
			env.logf("%s: controller exit: %v", s.NS, werr)
		}
	}
	if *audit {
		env.logf("reading the audit log")
		if err := c.SyncAuditLog(ctx, time.Minute); err != nil {
			return nil, err
		}
		if err := countShardRequests(c.AuditLog, shards); err != nil {
			return nil, err
		}
	}

	for _, s := range shards {
		if s.Loop, err = analyzeJournal(ctx, s.journalDir(), s.Start, s.End, nil); err != nil {
			return nil, fmt.Errorf("%s: reading its journal: %w", s.NS, err)
		}
	}
	env.logf("checking each shard's journal: verify, journal ID, namespaces, shared records")
	if err := checkJournals(ctx, bin, shards); err != nil {
		return nil, err
	}
	env.logf("replaying each shard's journal alone, then all %d at once", *n)
	for _, s := range shards {
		if s.Replay, err = replayJournal(ctx, bin, s.journalDir()); err != nil {
			return nil, fmt.Errorf("%s: %w", s.NS, err)
		}
		env.logf("  %s: %d records in %s (%.0f records/s), %s", s.NS, s.Replay.Records, s.Replay.Wall.Round(time.Millisecond), s.Replay.rate(), s.Replay.Verdict)
	}
	together, togetherWall, err := replayTogether(ctx, bin, shards)
	if err != nil {
		return nil, err
	}

	res := shardsResult{
		Shards: shards, PerShard: *perShard, Nodes: *nodes, MaxUnavailable: *maxUnavailable, Grace: *grace,
		NATS: *withNATS, Audit: *audit, QPS: *qps, Burst: *burst, Workers: *workers,
		ReadyTook: readyTook, Took: took, T10: t10, T90: t90, CapBefore: capBefore, CapAfter: capAfter,
		Load0: load0, Load1: load1, Together: together, TogetherWall: togetherWall,
		Others: map[string]float64{},
	}
	for k, v := range others1 {
		if k != "rollbook" {
			res.Others[k] = round(v-others0[k], 1)
		}
	}
	res.print(env)
	return res.summary(), nil
}

// shard is one controller, its namespace and what was measured of it.
type shard struct {
	Index      int
	NS         string
	SA, User   string // its ServiceAccount, and the user the apiserver logs
	Dir        string // its work directory: journal, log
	Ctrl       *cluster.Process
	MetricsURL string
	UIDs       map[string]types.UID // its pods' UIDs before the rollout

	// Start is its template change; End the first poll that saw its
	// rollout Succeeded.
	Start, End   time.Time
	Load1        string // at End
	m0, m1       scraped
	cpu0, CPU    float64 // CPU-seconds: at Start; from Start to End
	PeakRSSKiB   uint64
	Updated      int
	Ready        int
	Recreated    int
	Requests     requestCounts // from the audit log, by its user, in [Start, End]
	OutsideWrite int64         // writes by its user, all run long, to anything but its namespace
	Journal      shardJournal
	Loop         loopStats // its journal during its rollout: commits, ticks, each pod's cycle
	Replay       replayRun
}

func (s *shard) journalDir() string { return filepath.Join(s.Dir, "journal") }

func (s *shard) took() time.Duration { return s.End.Sub(s.Start) }

func (s *shard) rate() float64 { return float64(len(s.UIDs)) / s.took().Seconds() }

// metricsWrites is the controller's own count of its API writes during
// the rollout, by "verb resource".
func (s *shard) metricsWrites() map[string]int64 {
	out := map[string]int64{}
	for k, v := range s.m1.writes {
		if d := v - s.m0.writes[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func (s *shard) metricsPodWrites() int64 {
	w := s.metricsWrites()
	return w["patch pods"] + w["patch pods/status"] + w["create pods/eviction"] + w["patch pods/resize"]
}

// checkPods counts the shard's pods on v2, Ready, and recreated.
func (s *shard) checkPods(ctx context.Context, cs kubernetes.Interface) error {
	list, err := cs.CoreV1().Pods(s.NS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, p := range list.Items {
		if len(p.Spec.Containers) > 0 && p.Spec.Containers[0].Image == imageV2 {
			s.Updated++
		}
		if uid, ok := s.UIDs[p.Name]; !ok || uid != p.UID {
			s.Recreated++
		}
		for _, cd := range p.Status.Conditions {
			if cd.Type == corev1.PodReady && cd.Status == corev1.ConditionTrue {
				s.Ready++
			}
		}
	}
	s.Recreated += len(s.UIDs) - len(list.Items) // gone altogether
	return nil
}

// shardIdentity gives the shard a ServiceAccount of its own, bound to the
// controller's ClusterRole from deploy/rbac.yaml, and writes its
// kubeconfig: the audit log then tells the shards' requests apart.
func shardIdentity(ctx context.Context, c *cluster.Cluster, s *shard) (string, error) {
	cs := c.Clientset()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: s.SA},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "rollbook"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: s.SA, Namespace: "rollbook-system"}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	path := filepath.Join(s.Dir, "rollbook.kubeconfig")
	return path, serviceAccountKubeconfig(ctx, c, rollbookSystem, s.SA, path)
}

// startShardRollouts makes every shard's change at once: one goroutine per
// shard patches its StatefulSet's template and creates its InPlaceRollout,
// all released together.
func startShardRollouts(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, shards []*shard, maxUnavailable string, grace int) error {
	release := make(chan struct{})
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, s := range shards {
		wg.Go(func() {
			<-release
			s.Start = time.Now()
			patch := `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"` + imageV2 + `"}]}}}}`
			if _, err := cs.AppsV1().StatefulSets(s.NS).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.NS, err)
				return
			}
			if _, err := dyn.Resource(deploy.InPlaceRollouts).Namespace(s.NS).Create(ctx, benchRollout("web", maxUnavailable, grace), metav1.CreateOptions{}); err != nil {
				errs[i] = fmt.Errorf("%s: %w", s.NS, err)
			}
		})
	}
	close(release)
	wg.Wait()
	return errors.Join(errs...)
}

// shardedCapacity measures the apiserver's write capacity with the
// workers spread over the shards' pods (each shard's namespace gets its
// share of workers and writes), so that every controller sees its part of
// the label events; the rate is all writes over the longest loop.
func shardedCapacity(ctx context.Context, c *cluster.Cluster, shards []*shard, workers int, d time.Duration, maxWrites int) (capacityRun, error) {
	runs := make([]capacityRun, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, s := range shards {
		w := workers / len(shards)
		if i < workers%len(shards) {
			w++
		}
		if w == 0 {
			continue
		}
		names := make([]string, 0, len(s.UIDs))
		for name := range s.UIDs {
			names = append(names, name)
		}
		sort.Strings(names)
		wg.Go(func() {
			runs[i], errs[i] = writeCapacity(ctx, c, s.NS, names, w, d, maxWrites/len(shards))
		})
	}
	wg.Wait()
	var all capacityRun
	for _, r := range runs {
		all.Writes += r.Writes
		all.Errors += r.Errors
		all.Took = max(all.Took, r.Took)
	}
	return all, errors.Join(errs...)
}

// countShardRequests reads the audit log once: each shard's requests by
// its user during its rollout, and its writes, over the whole run, to
// anything outside its namespace (which a shard must never make).
func countShardRequests(auditLog string, shards []*shard) error {
	byUser := map[string]*shard{}
	counts := map[string]map[cluster.AuditKey]int64{}
	for _, s := range shards {
		byUser[s.User] = s
		counts[s.User] = map[cluster.AuditKey]int64{}
	}
	err := cluster.ReadAuditLog(auditLog, func(e *cluster.AuditEvent) error {
		s := byUser[e.User.Username]
		if s == nil || e.Stage != "ResponseComplete" {
			return nil
		}
		if e.IsWrite() && (e.ObjectRef == nil || e.ObjectRef.Namespace != s.NS) {
			s.OutsideWrite++
		}
		if t := e.RequestReceivedTimestamp; t.Before(s.Start) || t.After(s.End) {
			return nil
		}
		counts[s.User][cluster.AuditKey{UserAgent: e.UserAgent, User: e.User.Username, Verb: e.Verb, Resource: e.Resource(), Code: e.Code()}]++
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range shards {
		s.Requests = requestsFrom(counts[s.User])
	}
	return nil
}

// shardJournal is what a shard's journal says of itself once its
// controller has stopped.
type shardJournal struct {
	ID            string
	Records       uint64
	First, Last   uint64
	Head          [32]byte
	OwnNS         int    // records whose key names the shard's namespace
	ClusterScoped int    // nodes, ticks: no namespace
	OtherNS       int    // another shard's namespace: must be 0
	Verify        string // `rollbook journal verify`'s answer
}

// count files a record by the namespaces its key names. NB: keys come in
// several shapes ("pods/<ns>/<name>", "gate/<ns>/<name>", a watch cursor's
// "watch/<resource>/<ns>", "nodes/<name>"), so a key is looked at whole:
// journal.Subject's namespace token reads only the second segment and
// takes "watch/pods/<ns>" for namespace "pods".
func (sj *shardJournal) count(key, own string, others map[string]bool) {
	mine, foreign := false, false
	for _, seg := range strings.Split(key, "/") {
		mine = mine || seg == own
		foreign = foreign || others[seg]
	}
	switch {
	case foreign:
		sj.OtherNS++
	case mine:
		sj.OwnNS++
	default:
		sj.ClusterScoped++
	}
}

// checkJournals runs the product's `rollbook journal verify` on every
// shard's journal, reads each one's ID, head and the namespaces its records
// name, and fails when two shards share a journal ID or any record hash:
// each shard must be a chain of its own.
func checkJournals(ctx context.Context, bin string, shards []*shard) error {
	owner := map[[32]byte]int{} // record hash → shard
	ids := map[string]int{}
	for _, s := range shards {
		others := map[string]bool{}
		for _, o := range shards {
			if o != s {
				others[o.NS] = true
			}
		}
		out, err := exec.CommandContext(ctx, bin, "journal", "verify", "--dir", s.journalDir()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: rollbook journal verify: %v\n%s", s.NS, err, out)
		}
		s.Journal.Verify = strings.TrimSpace(string(out))
		j, err := journal.Open(s.journalDir(), journal.Options{Logger: quiet})
		if err != nil {
			return fmt.Errorf("%s: %w", s.NS, err)
		}
		s.Journal.ID = j.ID()
		s.Journal.First = j.First()
		s.Journal.Last, s.Journal.Head = j.Last()
		err = j.Read(ctx, j.First(), func(r journal.Record) error {
			s.Journal.Records++
			if other, ok := owner[r.Hash]; ok {
				return fmt.Errorf("record %d's hash %x is also in %s's journal", r.Seq, r.Hash[:8], shards[other].NS)
			}
			owner[r.Hash] = s.Index
			s.Journal.count(r.Key, s.NS, others)
			return nil
		})
		j.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", s.NS, err)
		}
		if other, ok := ids[s.Journal.ID]; ok {
			return fmt.Errorf("%s and %s have the same journal ID %s", shards[other].NS, s.NS, s.Journal.ID)
		}
		ids[s.Journal.ID] = s.Index
		if s.Journal.OtherNS > 0 {
			return fmt.Errorf("%s's journal holds %d records of other namespaces", s.NS, s.Journal.OtherNS)
		}
	}
	return nil
}

// replayRun is one `rollbook replay --dir` of a shard's journal.
type replayRun struct {
	Records uint64
	Wall    time.Duration
	CPU     time.Duration // user + system of the replay process
	Verdict string        // its last line
}

func (r replayRun) rate() float64 { return float64(r.Records) / r.Wall.Seconds() }

var replayedLine = regexp.MustCompile(`replayed (\d+) records`)

// replayJournal runs the product's replay on a journal and fails unless it
// reports no divergence.
func replayJournal(ctx context.Context, bin, dir string) (replayRun, error) {
	cmd := exec.CommandContext(ctx, bin, "replay", "--dir", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := replayRun{Wall: time.Since(start)}
	if cmd.ProcessState != nil {
		r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	text := strings.TrimSpace(out.String())
	if err != nil {
		return r, fmt.Errorf("rollbook replay --dir %s: %v\n%s", dir, err, text)
	}
	if !strings.Contains(text, "no divergence") {
		return r, fmt.Errorf("rollbook replay --dir %s reported no verdict of no divergence:\n%s", dir, text)
	}
	m := replayedLine.FindStringSubmatch(text)
	if m == nil {
		return r, fmt.Errorf("rollbook replay --dir %s: no record count in\n%s", dir, text)
	}
	r.Records, _ = strconv.ParseUint(m[1], 10, 64)
	r.Verdict = text[strings.LastIndexByte(text, '\n')+1:]
	return r, nil
}

// replayTogether replays every shard's journal at once, as a fleet's
// replay runs (docs/scale.md: each shard's stream, in parallel).
func replayTogether(ctx context.Context, bin string, shards []*shard) ([]replayRun, time.Duration, error) {
	runs := make([]replayRun, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	start := time.Now()
	for i, s := range shards {
		wg.Go(func() { runs[i], errs[i] = replayJournal(ctx, bin, s.journalDir()) })
	}
	wg.Wait()
	return runs, time.Since(start), errors.Join(errs...)
}

type shardsResult struct {
	Shards              []*shard
	PerShard, Nodes     int
	MaxUnavailable      string
	Grace               int
	NATS, Audit         bool
	QPS, Burst, Workers int
	ReadyTook, Took     time.Duration
	T10, T90            time.Duration
	CapBefore, CapAfter capacityRun
	Load0, Load1        string
	Together            []replayRun
	TogetherWall        time.Duration
	Others              map[string]float64 // CPU-seconds of the other processes during the rollouts
}

func (r *shardsResult) total() int { return len(r.Shards) * r.PerShard }

func (r *shardsResult) rate() float64 { return float64(r.total()) / r.Took.Seconds() }

func (r *shardsResult) capacity() float64 { return (r.CapBefore.rate() + r.CapAfter.rate()) / 2 }

func (r *shardsResult) steady() float64 {
	if r.T90 <= r.T10 {
		return 0
	}
	return float64(r.total()*8/10) / (r.T90 - r.T10).Seconds()
}

func (r *shardsResult) print(env *benchEnv) {
	n := len(r.Shards)
	fmt.Printf("\nshards: %d controllers (rollbook run --namespaces shard-i, each its own journal, ServiceAccount and metrics port, --kube-api-qps %s --kube-api-burst %s --workers %s, NATS %v) on one control plane; %d kwok nodes (3 zones); per shard a StatefulSet of %d pods (2 containers, OnDelete) and one InPlaceRollout (maxUnavailable %s, grace %ds, scatter zone), all changed at once\n",
		n, orDefault(r.QPS), orDefault(r.Burst), orDefault(r.Workers), r.NATS, r.Nodes, r.PerShard, r.MaxUnavailable, r.Grace)
	printMachine(env)
	fmt.Printf("  setup: %d pods created and Ready in %s; load average (1/5/15 min) %s at the change, %s when the last rollout Succeeded\n",
		r.total(), r.ReadyTook.Round(time.Second), r.Load0, r.Load1)
	cols := []string{""}
	for _, s := range r.Shards {
		cols = append(cols, s.NS)
	}
	cols = append(cols, "all")
	row := func(cells ...string) {
		fmt.Printf("  %-52s", cells[0])
		for _, c := range cells[1:] {
			fmt.Printf(" %-18s", c)
		}
		fmt.Println()
	}
	f := fmt.Sprintf
	per := func(what string, cell func(s *shard) string, all string) {
		cells := []string{what}
		for _, s := range r.Shards {
			cells = append(cells, cell(s))
		}
		row(append(cells, all)...)
	}
	var auditPod, auditOK, metricsPod, status, events, outside, c409, c429, reads, records int64
	var rss uint64
	var cpu float64
	var updated, ready, recreated int
	for _, s := range r.Shards {
		auditPod += s.Requests.PodWrites
		auditOK += s.Requests.PodWritesOK
		metricsPod += s.metricsPodWrites()
		status += s.Requests.StatusWrites
		events += s.Requests.EventWrites
		outside += s.OutsideWrite
		c409 += s.Requests.Code409
		c429 += s.Requests.Code429
		reads += s.Requests.Reads
		rss += s.PeakRSSKiB
		cpu += s.CPU
		updated += s.Updated
		ready += s.Ready
		recreated += s.Recreated
		records += int64(s.Journal.Records)
	}
	total := float64(r.total())
	row(cols...)
	per("pods", func(s *shard) string { return f("%d", len(s.UIDs)) }, f("%d", r.total()))
	per("rollout: change → Succeeded", func(s *shard) string { return f("%.1f s", s.took().Seconds()) }, f("%.1f s", r.Took.Seconds()))
	per("pods/s", func(s *shard) string { return f("%.1f", s.rate()) }, f("%.1f", r.rate()))
	if r.Audit {
		per("pod writes per pod (audit log, by the shard's user)", func(s *shard) string { return f("%.2f", s.Requests.podWritesPerPod(len(s.UIDs))) }, f("%.2f", float64(auditPod)/total))
		per("  of which succeeded", func(s *shard) string { return f("%.2f", float64(s.Requests.PodWritesOK)/float64(len(s.UIDs))) }, f("%.2f", float64(auditOK)/total))
	}
	per("pod writes per pod (its /metrics)", func(s *shard) string { return f("%.2f", float64(s.metricsPodWrites())/float64(len(s.UIDs))) }, f("%.2f", float64(metricsPod)/total))
	if r.Audit {
		per("rollout status writes / events", func(s *shard) string { return f("%d / %d", s.Requests.StatusWrites, s.Requests.EventWrites) }, f("%d / %d", status, events))
		per("409 / 429; reads (get, list)", func(s *shard) string {
			return f("%d / %d; %d", s.Requests.Code409, s.Requests.Code429, s.Requests.Reads)
		}, f("%d / %d; %d", c409, c429, reads))
		per("writes outside its namespace (whole run)", func(s *shard) string { return f("%d", s.OutsideWrite) }, f("%d", outside))
	}
	per("controller peak RSS (VmHWM)", func(s *shard) string { return f("%.0f MiB", mib(float64(s.PeakRSSKiB)*1024)) }, f("%.0f MiB", mib(float64(rss)*1024)))
	per("controller CPU-s during its rollout", func(s *shard) string { return f("%.1f", s.CPU) }, f("%.1f", cpu))
	per("pods after: on v2 / Ready / recreated", func(s *shard) string { return f("%d / %d / %d", s.Updated, s.Ready, s.Recreated) }, f("%d / %d / %d", updated, ready, recreated))
	per("journal during its rollout: records (commits), ticks", func(s *shard) string {
		return f("%d (%d), %d", s.Loop.Records, s.Loop.Commits, s.Loop.Ticks)
	}, "")
	per("pod cycle, gate intended → ungate succeeded", func(s *shard) string {
		return f("%.1f s (p90 %.1f)", s.Loop.Cycle.Median.Seconds(), s.Loop.Cycle.P90.Seconds())
	}, "")
	per("  pods in flight ≈ pods/s × median cycle", func(s *shard) string { return f("%.0f", s.rate()*s.Loop.Cycle.Median.Seconds()) }, "")
	per("journal ID", func(s *shard) string { return s.Journal.ID[:min(16, len(s.Journal.ID))] }, f("%d distinct", n))
	per("journal records (last sequence)", func(s *shard) string { return f("%d (%d)", s.Journal.Records, s.Journal.Last) }, f("%d", records))
	per("  own namespace / no namespace / other", func(s *shard) string {
		return f("%d / %d / %d", s.Journal.OwnNS, s.Journal.ClusterScoped, s.Journal.OtherNS)
	}, "")
	per("  head hash", func(s *shard) string { return f("%x", s.Journal.Head[:6]) }, "no hash shared")
	per("replay alone: records/s (CPU-s)", func(s *shard) string { return f("%.0f (%.1f)", s.Replay.rate(), s.Replay.CPU.Seconds()) }, "")
	togetherCells := []string{"replay, all at once: records/s"}
	for _, t := range r.Together {
		togetherCells = append(togetherCells, f("%.0f", t.rate()))
	}
	row(append(togetherCells, f("%.0f in %.1f s", float64(records)/r.TogetherWall.Seconds(), r.TogetherWall.Seconds()))...)
	per("load average (1 min) when Succeeded", func(s *shard) string { one, _, _ := strings.Cut(s.Load1, " "); return one }, "")
	for _, s := range r.Shards {
		fmt.Printf("  %s: journal verify: %s; replay: %s\n", s.NS, s.Journal.Verify, s.Replay.Verdict)
		if r.Audit {
			fmt.Printf("  %s: requests by %s during its rollout: %s\n", s.NS, s.User, fmtCounts(s.Requests.ByKey))
		}
		fmt.Printf("  %s: its /metrics, writes during its rollout: %s\n", s.NS, fmtCounts(s.metricsWrites()))
	}
	fmt.Printf("  all pods: 10%%→90%% at %.1f pods/s\n", r.steady())
	fmt.Printf("  apiserver write capacity (label merge-patches spread over the shards' pods, ≤%s): %.0f writes/s before, %.0f after → bound %.1f pods/s at 3 writes a pod; ratio all pods/s ÷ (capacity/3): %.2f\n",
		r.CapBefore.Took.Round(time.Second), r.CapBefore.rate(), r.CapAfter.rate(), r.capacity()/3, r.rate()/(r.capacity()/3))
	fmt.Printf("  CPU-seconds of the rest during the rollouts: %s (wall %.0f s, 2 cores = %.0f CPU-s)\n", fmtFloats(r.Others), r.Took.Seconds(), 2*r.Took.Seconds())
	if updated != r.total() || ready != r.total() || recreated != 0 || outside != 0 {
		fmt.Printf("  WARNING: %d of %d pods updated, %d Ready, %d recreated; %d writes outside a shard's namespace\n", updated, r.total(), ready, recreated, outside)
	}
}

func (r *shardsResult) summary() map[string]any {
	shards := make([]map[string]any, 0, len(r.Shards))
	var records uint64
	for _, s := range r.Shards {
		records += s.Journal.Records
		m := map[string]any{
			"namespace": s.NS, "user": s.User, "pods": len(s.UIDs),
			"rollout_s": round(s.took().Seconds(), 1), "pods_per_s": round(s.rate(), 2),
			"metrics_writes": s.metricsWrites(), "metrics_pod_writes_per_pod": round(float64(s.metricsPodWrites())/float64(len(s.UIDs)), 2),
			"peak_rss_mib": mib(float64(s.PeakRSSKiB) * 1024), "cpu_seconds": round(s.CPU, 1),
			"updated": s.Updated, "ready": s.Ready, "recreated": s.Recreated, "load_at_end": s.Load1,
			"journal": map[string]any{
				"id": s.Journal.ID, "records": s.Journal.Records, "first": s.Journal.First, "last": s.Journal.Last,
				"head": fmt.Sprintf("%x", s.Journal.Head), "own_namespace": s.Journal.OwnNS, "no_namespace": s.Journal.ClusterScoped,
				"other_namespace": s.Journal.OtherNS, "verify": s.Journal.Verify,
			},
			"loop": map[string]any{
				"records": s.Loop.Records, "commits": s.Loop.Commits, "ticks": s.Loop.Ticks, "observed": s.Loop.Observed,
				"intents": s.Loop.Intents, "succeeded": s.Loop.Succeeded, "failed": s.Loop.Failed,
				"cycle_median_s": round(s.Loop.Cycle.Median.Seconds(), 3), "cycle_p90_s": round(s.Loop.Cycle.P90.Seconds(), 3),
				"phases": phaseMap(s.Loop.Phases),
			},
			"replay": map[string]any{
				"records": s.Replay.Records, "wall_s": round(s.Replay.Wall.Seconds(), 2), "cpu_s": round(s.Replay.CPU.Seconds(), 2),
				"records_per_s": round(s.Replay.rate(), 0), "records_per_cpu_s": round(float64(s.Replay.Records)/s.Replay.CPU.Seconds(), 0),
				"verdict": s.Replay.Verdict,
			},
		}
		if r.Audit {
			q := s.Requests
			m["audit"] = map[string]any{
				"pod_writes": q.PodWrites, "pod_writes_ok": q.PodWritesOK, "pod_writes_per_pod": round(q.podWritesPerPod(len(s.UIDs)), 2),
				"status_writes": q.StatusWrites, "event_writes": q.EventWrites, "other_writes": q.OtherWrites, "reads": q.Reads,
				"conflicts_409": q.Code409, "throttled_429": q.Code429, "requests": q.ByKey, "outside_namespace_writes": s.OutsideWrite,
			}
		}
		shards = append(shards, m)
	}
	together := make([]float64, len(r.Together))
	for i, t := range r.Together {
		together[i] = round(t.rate(), 0)
	}
	return map[string]any{
		"shards": len(r.Shards), "pods_per_shard": r.PerShard, "pods": r.total(), "nodes": r.Nodes,
		"max_unavailable": r.MaxUnavailable, "grace_seconds": r.Grace, "nats": r.NATS, "audit_log": r.Audit,
		"kube_api_qps": orDefault(r.QPS), "kube_api_burst": orDefault(r.Burst), "workers": orDefault(r.Workers),
		"ready_setup_s": round(r.ReadyTook.Seconds(), 1),
		"rollout_s":     round(r.Took.Seconds(), 1), "pods_per_s": round(r.rate(), 1), "pods_per_s_10_90": round(r.steady(), 1),
		"capacity_before": round(r.CapBefore.rate(), 0), "capacity_after": round(r.CapAfter.rate(), 0),
		"ratio_vs_capacity_over_3": round(r.rate()/(r.capacity()/3), 2),
		"load_at_change":           r.Load0, "load_at_last_succeeded": r.Load1,
		"other_cpu_seconds": r.Others,
		"journal_records":   records,
		"replay_together_s": round(r.TogetherWall.Seconds(), 2), "replay_together_records_per_s": round(float64(records)/r.TogetherWall.Seconds(), 0),
		"replay_together_per_shard_records_per_s": together,
		"per_shard": shards,
	}
}
