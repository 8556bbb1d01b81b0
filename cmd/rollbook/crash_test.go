package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"rollbook.dev/rollbook/test/cluster"
)

const childEnv = "ROLLBOOK_CONTROLLER_CHILD"

// childMain runs the controller as its own process, for kill -9 tests.
func childMain() int {
	cfg := &rest.Config{Host: os.Getenv("ROLLBOOK_SERVER"), BearerToken: os.Getenv("ROLLBOOK_TOKEN"),
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 500, Burst: 1000}
	ctrl, err := newController(controllerOptions{
		Config: cfg, JournalDir: os.Getenv(childEnv), Namespaces: []string{os.Getenv("ROLLBOOK_NS")},
		QPS: 500, Burst: 1000, Workers: 32,
		// Frequent checkpoints and a retention that prunes all it may, so
		// every restart starts from a checkpoint of a pruned journal.
		Checkpoints: checkpointOptions{Every: 200, Interval: 200 * time.Millisecond, RetainBytes: 1},
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go func() {
		for !ctrl.started.Load() || ctrl.plans.Load() == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Println("planning")
	}()
	// SIGTERM ends the run gracefully (spans flushed); SIGKILL is the crash.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := ctrl.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func startChild(t *testing.T, c *cluster.Cluster, dir, ns string, token string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+filepath.Join(dir, "journal"), "ROLLBOOK_NS="+ns,
		"ROLLBOOK_SERVER="+c.Server, "ROLLBOOK_TOKEN="+token)
	logf, err := os.OpenFile(filepath.Join(dir, "rollbook.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "planning") {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Wait()
			t.Fatalf("controller process exited before planning:\n%s", cluster.Tail(filepath.Join(dir, "rollbook.log"), 20))
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("controller process did not start planning within 1m")
	}
	return cmd
}

// TestKillNineMidRollout kills the controller process with SIGKILL at
// random moments during a rollout, 8 times: the rollout still completes,
// no pod is patched twice for one revision, no pod is left gated, the
// journal's chain verifies, replay derives the recorded actions, and the
// spans the successive processes exported to a real OTLP receiver form one
// trace with every action the journal holds.
func TestKillNineMidRollout(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	cfg, err := c.ServiceAccountConfig(ctx, ns, "rollbook")
	if err != nil {
		t.Fatal(err)
	}
	grantRollbook(t, c, ns)
	rc := startOTLPReceiver(t) // the children inherit OTEL_EXPORTER_OTLP_ENDPOINT
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: 120, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ch := startChild(t, c, dir, ns, cfg.BearerToken)
	waitSTSReady(t, c, ns, "web", 120, 2*time.Minute)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 10, "gracePeriodSeconds": int64(1)}))
	for i := 0; i < 8; i++ {
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond) // a random moment, not a wait for a condition
		ch.Process.Signal(syscall.SIGKILL)
		ch.Wait()
		ch = startChild(t, c, dir, ns, cfg.BearerToken)
	}
	waitPhase(t, c, ns, "web", "Succeeded", 3*time.Minute)
	// The rollout's root span ends when the controller sees Succeeded;
	// the live exporter sends it within a second.
	cluster.Eventually(t, 30*time.Second, "root span exported", func() error {
		if !rc.hasRoot() {
			return errors.New("no root span received yet")
		}
		return nil
	})
	ch.Process.Signal(syscall.SIGTERM)
	ch.Wait()
	// The processes restarted from checkpoints of a pruned journal, and
	// what follows is checked on what retention kept.
	log, err := os.ReadFile(filepath.Join(dir, "rollbook.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`journal folded"? checkpoint=[1-9]`).Match(log) {
		t.Fatal("no controller started from a checkpoint")
	}
	if !strings.Contains(string(log), "retention: pruned the journal") {
		t.Fatal("retention never pruned the journal")
	}
	checkReplay(t, dir)
	checkSpans(t, rc, dir, ns+"/web")
	au := readAudit(t, dir)
	if len(au.patchedTwice) > 0 {
		t.Fatalf("patched twice for one revision: %v", au.patchedTwice)
	}
	for name, p := range podsByName(t, c, ns) {
		for _, cd := range p.Status.Conditions {
			if cd.Type == "rollbook.dev/InPlaceUpdateReady" && cd.Status != "True" {
				t.Fatalf("%s left gated", name)
			}
		}
		if p.Spec.Containers[0].Image != "registry.example/app:v2" {
			t.Fatalf("%s not updated", name)
		}
	}
}
