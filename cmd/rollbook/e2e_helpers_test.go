package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/test/fleet"
)

// running is a controller running in process for one test's namespace.
type running struct {
	c      *controller
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func startController(t *testing.T, c *cluster.Cluster, dir, ns string) *running {
	t.Helper()
	cfg, err := c.ServiceAccountConfig(context.Background(), ns, "rollbook")
	if err != nil {
		t.Fatal(err)
	}
	grantRollbook(t, c, ns)
	cfg.QPS, cfg.Burst = 500, 1000
	logf, err := os.OpenFile(filepath.Join(dir, "rollbook.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	ctrl, err := newController(controllerOptions{
		Config: cfg, JournalDir: filepath.Join(dir, "journal"), Namespaces: []string{ns}, NoNATS: true,
		QPS: 500, Burst: 1000, Workers: 32,
		// Checkpoints as often as a busy cluster's, scaled to a test.
		Checkpoints: checkpointOptions{Every: 1000, Interval: time.Second},
		Logger:      slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: ctrl, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- ctrl.run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := <-r.done; err != nil {
		t.Errorf("controller: %v", err)
	}
	if t.Failed() {
		t.Logf("controller log tail:\n%s", cluster.Tail(filepath.Join(r.dir, "rollbook.log"), 30))
		return
	}
	checkReplay(t, r.dir)
}

// checkReplay replays a test's journal through today's planner: every
// end-to-end test also proves its rollout is replayable, and that the
// incremental planner the controller ran derives at every recorded plan
// what a plan of everything derives. With
// ROLLBOOK_WRITE_FIXTURES=<dir> it also exports the journal there, as a
// replay fixture (test/replay/testdata).
func checkReplay(t *testing.T, dir string) {
	t.Helper()
	src := recordSource{dir: filepath.Join(dir, "journal")}
	d, rp, n, err := replay(context.Background(), src, "", replayMode{crossCheck: true})
	if err != nil {
		t.Fatalf("replaying the journal: %v", err)
	}
	if d != nil {
		t.Fatalf("replay of %d records diverged: %s", n, d.String())
	}
	t.Logf("replay: %d records, %s", n, rp.Summary())
	if out := os.Getenv("ROLLBOOK_WRITE_FIXTURES"); out != "" {
		writeFixture(t, src, filepath.Join(out, strings.ReplaceAll(t.Name(), "/", "_")+".jsonl.gz"))
	}
}

func writeFixture(t *testing.T, src recordSource, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz := gzip.NewWriter(f)
	enc := json.NewEncoder(gz)
	err = src.read(context.Background(), func(r journal.Record) error {
		line, err := exportRecord(r)
		if err != nil {
			return err
		}
		return enc.Encode(line)
	})
	if err == nil {
		err = gz.Close()
	}
	if err != nil {
		t.Fatalf("writing fixture %s: %v", path, err)
	}
}

// grantRollbook binds the rollbook ServiceAccount of ns to the ClusterRole
// in deploy/rbac.yaml: the tests run with exactly the RBAC users deploy.
func grantRollbook(t *testing.T, c *cluster.Cluster, ns string) {
	t.Helper()
	ctx := context.Background()
	ns0 := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"rollbook-system"}}`
	if _, err := deploy.Apply(ctx, c.Config(), []byte(ns0), deploy.ApplyOptions{}); err != nil {
		t.Fatalf("creating rollbook-system: %v", err)
	}
	if _, err := deploy.Apply(ctx, c.Config(), deploy.RBAC, deploy.ApplyOptions{}); err != nil {
		t.Fatalf("applying deploy/rbac.yaml: %v", err)
	}
	crb := fmt.Sprintf(`{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"rollbook-test-%s"},
		"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"rollbook"},
		"subjects":[{"kind":"ServiceAccount","name":"rollbook","namespace":%q}]}`, ns, ns)
	if _, err := deploy.Apply(ctx, c.Config(), []byte(crb), deploy.ApplyOptions{}); err != nil {
		t.Fatalf("binding the rollbook ClusterRole: %v", err)
	}
}

type stsOpts struct {
	replicas int32
	gate     bool
	image    string
	env      string
	strategy appsv1.StatefulSetUpdateStrategyType
}

func kwokStatefulSet(name string, o stsOpts) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	if o.strategy == "" {
		o.strategy = appsv1.OnDeleteStatefulSetStrategyType
	}
	if o.image == "" {
		o.image = "registry.example/app:v1"
	}
	spec := corev1.PodSpec{
		NodeSelector: map[string]string{fleet.TypeLabel: fleet.TypeValue},
		Containers: []corev1.Container{
			{Name: "app", Image: o.image},
			{Name: "log", Image: "registry.example/log:v1"},
		},
	}
	if o.env != "" {
		spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: o.env}}
	}
	if o.gate {
		spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: planner.GateCondition}}
	}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &o.replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.ParallelPodManagement,
			UpdateStrategy:      appsv1.StatefulSetUpdateStrategy{Type: o.strategy},
			Template:            corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

func createRollout(t *testing.T, c *cluster.Cluster, ns, name string, spec map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rollbook.dev/v1alpha1", "kind": "InPlaceRollout",
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	if _, err := dynamic.NewForConfigOrDie(c.Config()).Resource(deploy.InPlaceRollouts).Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating rollout %s: %v", name, err)
	}
}

func rolloutStatus(c *cluster.Cluster, ns, name string) (projections.RolloutStatus, error) {
	u, err := dynamic.NewForConfigOrDie(c.Config()).Resource(deploy.InPlaceRollouts).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return projections.RolloutStatus{}, err
	}
	var st projections.RolloutStatus
	raw, _ := json.Marshal(u.Object["status"])
	err = json.Unmarshal(raw, &st)
	return st, err
}

// waitPhase waits for the rollout to reach phase and returns its status.
func waitPhase(t *testing.T, c *cluster.Cluster, ns, name, phase string, timeout time.Duration) projections.RolloutStatus {
	t.Helper()
	var st projections.RolloutStatus
	cluster.Eventually(t, timeout, "rollout "+name+" "+phase, func() error {
		var err error
		if st, err = rolloutStatus(c, ns, name); err != nil {
			return err
		}
		if st.Phase != phase {
			return fmt.Errorf("phase %q, updated %d/%d, unavailable %d, conditions %s", st.Phase, st.Updated, st.Replicas, st.Unavailable, condSummary(st.Conditions))
		}
		return nil
	})
	return st
}

func condSummary(cs []metav1.Condition) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(parts, "; ")
}

func condition(st projections.RolloutStatus, typ string) *metav1.Condition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

func waitSTSReady(t *testing.T, c *cluster.Cluster, ns, name string, replicas int32, timeout time.Duration) {
	t.Helper()
	cluster.Eventually(t, timeout, "StatefulSet "+name+" ready", func() error {
		s, err := c.Clientset().AppsV1().StatefulSets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Status.ReadyReplicas != replicas {
			return fmt.Errorf("%d/%d ready", s.Status.ReadyReplicas, replicas)
		}
		return nil
	})
}

// podsByName lists the namespace's pods.
func podsByName(t *testing.T, c *cluster.Cluster, ns string) map[string]corev1.Pod {
	t.Helper()
	list, err := c.Clientset().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Pod{}
	for _, p := range list.Items {
		out[p.Name] = p
	}
	return out
}

func containerStatus(p corev1.Pod, name string) corev1.ContainerStatus {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s
		}
	}
	return corev1.ContainerStatus{}
}

// audit is what a journal says happened, per pod, for assertions.
type audit struct {
	actions      map[string]map[string]int // pod → kind → succeeded count
	maxGated     int                       // most pods gated at once (observed)
	firstGated   []string                  // pods in order of first gating
	patchedTwice []string
}

func readAudit(t *testing.T, dir string) audit {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n, err := j.Verify(context.Background()); err != nil {
		t.Fatalf("journal chain broken after %d records: %v", n, err)
	}
	// Every checkpoint a controller wrote, before and after its restarts,
	// holds what its records fold to.
	ca, err := ctl.AuditCheckpoints(context.Background(), j, ctl.AuditOptions{})
	if err != nil {
		t.Fatalf("journal checkpoints: %v", err)
	}
	t.Logf("journal: %d checkpoints hold the fold of their records, folded from record %d", len(ca.Checked), ca.From+1)
	a := audit{actions: map[string]map[string]int{}}
	gated := map[string]bool{}
	seenGate := map[string]bool{}
	patchRev := map[string]bool{}
	err = j.Read(context.Background(), 1, func(r journal.Record) error {
		switch r.Kind {
		case journal.KindActionSucceeded:
			var f journal.ActionFact
			if err := r.Decode(&f); err != nil {
				return err
			}
			if f.Pod == "" {
				return nil
			}
			if a.actions[f.Pod] == nil {
				a.actions[f.Pod] = map[string]int{}
			}
			a.actions[f.Pod][f.Kind]++
			if f.Kind == "patch" {
				k := f.Pod + "@" + f.UID + "@" + f.Revision
				if patchRev[k] {
					a.patchedTwice = append(a.patchedTwice, k)
				}
				patchRev[k] = true
			}
		case journal.KindObserved:
			var o journal.Observed
			if err := r.Decode(&o); err != nil {
				return err
			}
			if o.Pod == nil {
				return nil
			}
			k := o.Namespace + "/" + o.Name
			g := false
			for _, c := range o.Pod.Conditions {
				if c.Type == planner.GateCondition && c.Status == "False" {
					g = true
				}
			}
			if g && !seenGate[k] {
				seenGate[k] = true
				a.firstGated = append(a.firstGated, o.Name)
			}
			if g && !o.Deleted {
				gated[k] = true
			} else {
				delete(gated, k)
			}
			a.maxGated = max(a.maxGated, len(gated))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// walkPods calls fn with every observed pod state in the journal.
func walkPods(t *testing.T, dir string, fn func(name string, conds map[string]string)) {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	err = j.Read(context.Background(), 1, func(r journal.Record) error {
		if r.Kind != journal.KindObserved {
			return nil
		}
		var o journal.Observed
		if err := r.Decode(&o); err != nil {
			return err
		}
		if o.Pod == nil {
			return nil
		}
		conds := map[string]string{}
		for _, c := range o.Pod.Conditions {
			conds[c.Type] = c.Status
		}
		fn(o.Name, conds)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func daemonSet(name string, tmpl corev1.PodTemplateSpec) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector:       &metav1.LabelSelector{MatchLabels: tmpl.Labels},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType},
			Template:       tmpl,
		},
	}
}

// podRecords lists what the journal holds about one pod ("ns/name"): its
// observed states (images, gate, ready, resourceVersion) and the actions,
// for failure messages.
func podRecords(t *testing.T, dir, pod string) string {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		return err.Error()
	}
	defer j.Close()
	var b strings.Builder
	_ = j.Read(context.Background(), 1, func(r journal.Record) error {
		switch r.Kind {
		case journal.KindObserved:
			if r.Key != "pods/"+pod {
				return nil
			}
			var o journal.Observed
			if r.Decode(&o) != nil || o.Pod == nil {
				return nil
			}
			var imgs, conds []string
			for _, c := range o.Pod.Containers {
				imgs = append(imgs, c.Name+"="+c.Image+"@"+c.ContainerID)
			}
			for _, c := range o.Pod.Conditions {
				conds = append(conds, c.Type+"="+c.Status)
			}
			fmt.Fprintf(&b, "%6d observed rv=%s label=%s %v %v\n", r.Seq, o.ResourceVersion, o.Labels[planner.RevisionLabel], imgs, conds)
		case journal.KindActionIntended, journal.KindActionSucceeded, journal.KindActionFailed:
			var f journal.ActionFact
			if r.Decode(&f) != nil || f.Pod != pod {
				return nil
			}
			what := ""
			if len(f.Action) > 0 {
				var a planner.Action
				if journal.DecodeBody(f.Action, &a) == nil {
					what = a.String()
				}
			}
			fmt.Fprintf(&b, "%6d %s plan=%d rv=%s %s %s %s\n", r.Seq, r.Kind, f.PlanSeq, f.ResultVersion, f.Class, f.Error, what)
		}
		return nil
	})
	return b.String()
}

// waitSeen waits until the controller's own view (the status it wrote,
// back through its watch) has the rollout in phase: spans of a rollout end
// there, so a test that checks exported spans stops the controller after.
func (r *running) waitSeen(t *testing.T, rollout, phase string) {
	t.Helper()
	cluster.Eventually(t, 30*time.Second, "controller sees "+rollout+" "+phase, func() error {
		rollouts, _, _, _ := r.c.snapshot()
		if got := rollouts[rollout].Phase; got != phase {
			return fmt.Errorf("controller's view: %q", got)
		}
		return nil
	})
}
