package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// leading checks that p leads.
func leading(p *runProc) func() error {
	return func() error {
		if s := p.readyz(); !strings.Contains(s, "200 ok: leading") {
			return fmt.Errorf("readyz: %s\n%s", s, cluster.Tail(p.log, 10))
		}
		return nil
	}
}

// rollAcrossFailover rolls StatefulSet web's pods to app:v2 and kills
// the leader a mid-rollout, once a third of them are updated; the
// standby b leads and finishes, and is stopped.
func rollAcrossFailover(t *testing.T, c *cluster.Cluster, ns string, pods int, a, b *runProc) {
	t.Helper()
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 2, "gracePeriodSeconds": int64(1)}))
	cluster.Eventually(t, 2*time.Minute, "a third of the pods updated", func() error {
		n := 0
		for _, p := range podsByName(t, c, ns) {
			if p.Spec.Containers[0].Image == "registry.example/app:v2" {
				n++
			}
		}
		if n < pods/3 {
			return fmt.Errorf("%d of %d updated", n, pods)
		}
		return nil
	})
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()
	cluster.Eventually(t, time.Minute, "b leading", leading(b))
	waitPhase(t, c, ns, "web", "Succeeded", 3*time.Minute)
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
}

// TestFailoverContinuesOneHistory: two `rollbook run` replicas share a
// NATS JetStream stream. The standby follows the leader's stream into its
// own journal; the leader is killed mid-rollout; the standby leads,
// continuing the same journal (same ID, same chain), and finishes. The
// stream then replays as one history across both leaders, with no
// divergence, and no pod was patched twice.
func TestFailoverContinuesOneHistory(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	url := startTestNATS(t, dir).URL
	replica := func(name string) *runProc {
		return spawnRun(t, c, filepath.Join(dir, name), "--namespaces", ns, "--leader-elect", "--leader-elect-namespace", ns,
			"--nats-url", url, "--checkpoint-every", "100")
	}
	a := replica("a")
	cluster.Eventually(t, time.Minute, "a leading", leading(a))
	const pods = 16
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: pods, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", pods, time.Minute)
	b := replica("b")
	cluster.Eventually(t, time.Minute, "b following the stream", func() error {
		log, _ := os.ReadFile(b.log)
		if !strings.Contains(string(log), "follow: following the leader's stream") {
			return fmt.Errorf("b's log:\n%s", cluster.Tail(b.log, 10))
		}
		return nil
	})
	rollAcrossFailover(t, c, ns, pods, a, b)

	// One history: b's journal is a's journal continued.
	ja, err := journal.Open(filepath.Join(dir, "a", "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	idA, _ := ja.Last()
	aID := ja.ID()
	ja.Close()
	jb, err := journal.Open(filepath.Join(dir, "b", "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bID := jb.ID()
	bLast, _ := jb.Last()
	n, verr := jb.Verify(ctx)
	jb.Close()
	if bID != aID || verr != nil || bLast <= idA/2 {
		t.Fatalf("b's journal: ID %s (a's %s), %d records verified (%v), ends at %d (a's at %d)", bID, aID, n, verr, bLast, idA)
	}
	// The stream replays across the failover as one chain, and today's
	// planner derives what both leaders did.
	fromStream := recordSource{nats: journal.NATSConfig{URL: url}, stream: "ROLLBOOK"}
	d, rp, records, err := replay(ctx, fromStream, ns+"/web", replayMode{})
	if err != nil {
		t.Fatalf("replaying the stream across the failover: %v", err)
	}
	if d != nil {
		t.Fatalf("replay of the stream diverged: %s", d.String())
	}
	if records <= idA/2 || rp.Actions == 0 {
		t.Fatalf("the stream holds %d records, %d actions compared", records, rp.Actions)
	}
	au := readAudit(t, filepath.Join(dir, "b"))
	if len(au.patchedTwice) > 0 {
		t.Fatalf("patched twice for one revision: %v", au.patchedTwice)
	}
	for name, p := range podsByName(t, c, ns) {
		if p.Spec.Containers[0].Image != "registry.example/app:v2" {
			t.Fatalf("%s not updated", name)
		}
	}
	t.Logf("a journaled up to %d; b continued journal %s to %d; the stream replays %d records: %s", idA, bID, bLast, records, rp.Summary())
}
