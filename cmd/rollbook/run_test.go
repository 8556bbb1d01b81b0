package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/test/cluster"
)

const runArgsEnv = "ROLLBOOK_RUN_ARGS"

// runChildMain is `rollbook run` with the arguments in ROLLBOOK_RUN_ARGS:
// the real command line path, in its own process.
func runChildMain() int {
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(runArgsEnv)), &args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := runCmd(ctx, args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type runProc struct {
	cmd     *exec.Cmd
	metrics string
	log     string
}

func startRun(t *testing.T, c *cluster.Cluster, dir, ns, leaseNS string) *runProc {
	t.Helper()
	return spawnRun(t, c, dir, "--namespaces", ns, "--leader-elect", "--leader-elect-namespace", leaseNS, "--no-nats")
}

// spawnRun starts `rollbook run` in its own process with a journal under
// dir, /metrics on a free loopback port, and args.
func spawnRun(t *testing.T, c *cluster.Cluster, dir string, args ...string) *runProc {
	t.Helper()
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	argv, _ := json.Marshal(append([]string{"--kubeconfig", c.Kubeconfig, "--journal-dir", filepath.Join(dir, "journal"),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port)}, args...))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), runArgsEnv+"="+string(argv))
	p := &runProc{cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d", port), log: filepath.Join(dir, "run.log")}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644) // a restarted replica appends
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return p
}

func (p *runProc) get(path string) (int, string, error) {
	resp, err := http.Get(p.metrics + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (p *runProc) readyz() string {
	code, body, err := p.get("/readyz")
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", code, strings.TrimSpace(body))
}

// TestLeaderElectionStandbyTakesOver runs `rollbook run` twice with leader
// election on a Lease: one leads (ready, /metrics reports it leading), the
// other stands by (ready, not acting); when the leader is killed, the
// standby takes over and drives a rollout to the end.
func TestLeaderElectionStandbyTakesOver(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := startRun(t, c, filepath.Join(dir, "a"), ns, ns)
	cluster.Eventually(t, time.Minute, "first replica leading", func() error {
		if s := a.readyz(); !strings.Contains(s, "200 ok: leading") {
			return fmt.Errorf("readyz: %s\n%s", s, cluster.Tail(a.log, 10))
		}
		return nil
	})
	b := startRun(t, c, filepath.Join(dir, "b"), ns, ns)
	cluster.Eventually(t, time.Minute, "second replica standing by", func() error {
		if s := b.readyz(); !strings.Contains(s, "200 ok: standing by") {
			return fmt.Errorf("readyz: %s", s)
		}
		return nil
	})
	_, m, err := a.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rollbook_leader 1", "rollbook_pods{state=\"tracked\"}", "rollbook_journal_sequence", "rollbook_plans_total"} {
		if !strings.Contains(m, want) {
			t.Fatalf("leader /metrics lacks %q:\n%s", want, m)
		}
	}
	if _, m, _ := b.get("/metrics"); !strings.Contains(m, "rollbook_leader 0") {
		t.Fatalf("standby /metrics does not say it is not leading:\n%s", m)
	}

	// The leader dies; the standby takes the Lease and works.
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()
	cluster.Eventually(t, time.Minute, "standby took over", func() error {
		if s := b.readyz(); !strings.Contains(s, "200 ok: leading") {
			return fmt.Errorf("readyz: %s", s)
		}
		return nil
	})
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: 4, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 4, time.Minute)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 2}))
	waitPhase(t, c, ns, "web", "Succeeded", 2*time.Minute)
	// The metrics read the controller's view, which sees the Succeeded
	// status it wrote when the watch brings it back: poll.
	cluster.Eventually(t, 30*time.Second, "new leader's /metrics", func() error {
		fams, err := scrapeMetrics(b.metrics)
		if err != nil {
			return err
		}
		for _, w := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"rollbook_rollouts", map[string]string{"phase": "Succeeded"}, 1},
			{"rollbook_api_writes_total", map[string]string{"verb": "patch", "resource": "pods"}, 4},
			{"rollbook_action_seconds", map[string]string{"kind": "patch"}, 4}, // the summary's count
		} {
			if v, ok := metricValue(fams, w.name, w.labels); v != w.want {
				return fmt.Errorf("%s%v is %v (present: %v), want %v", w.name, w.labels, v, ok, w.want)
			}
		}
		return nil
	})
}

// TestDaemonSetInPlace: a DaemonSet on OnDelete, one pod per node, rolled
// in place; the DaemonSet's own status counts every pod updated.
func TestDaemonSetInPlace(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	startController(t, c, t.TempDir(), ns)
	sts := kwokStatefulSet("agent", stsOpts{gate: true})
	ds := daemonSet("agent", sts.Spec.Template)
	if _, err := c.Clientset().AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 2*time.Minute, "DaemonSet ready", func() error {
		d, err := c.Clientset().AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.DesiredNumberScheduled != kwokNodes || d.Status.NumberReady != kwokNodes {
			return fmt.Errorf("desired %d ready %d", d.Status.DesiredNumberScheduled, d.Status.NumberReady)
		}
		return nil
	})
	before := podsByName(t, c, ns)
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"log","image":"registry.example/log:v2"}]}}}}`
	if _, err := c.Clientset().AppsV1().DaemonSets(ns).Patch(ctx, "agent", "application/strategic-merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	createRollout(t, c, ns, "agent", map[string]any{
		"target":   map[string]any{"workloadRef": map[string]any{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent"}},
		"strategy": map[string]any{"maxUnavailable": "20%"},
	})
	waitPhase(t, c, ns, "agent", "Succeeded", 2*time.Minute)
	cluster.Eventually(t, time.Minute, "DaemonSet counts pods updated", func() error {
		d, err := c.Clientset().AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.UpdatedNumberScheduled != kwokNodes {
			return fmt.Errorf("updatedNumberScheduled %d of %d", d.Status.UpdatedNumberScheduled, kwokNodes)
		}
		return nil
	})
	for name, p := range podsByName(t, c, ns) {
		if before[name].UID != p.UID {
			t.Fatalf("%s recreated", name)
		}
	}
}
