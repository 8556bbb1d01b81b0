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

// waitLog waits until p's log holds each of lines, in that order.
func waitLog(t *testing.T, p *runProc, what string, lines ...string) {
	t.Helper()
	cluster.Eventually(t, time.Minute, what, func() error {
		b, _ := os.ReadFile(p.log)
		rest := string(b)
		for _, l := range lines {
			var ok bool
			if _, rest, ok = strings.Cut(rest, l); !ok {
				return fmt.Errorf("no %q in its log:\n%s", l, cluster.Tail(p.log, 10))
			}
		}
		return nil
	})
}

// replicaJournal is what a stopped replica's journal holds.
type replicaJournal struct {
	id                    string
	first, last, verified uint64
	verr                  error // Verify's
}

// journalAt opens the journal of the replica run in dir and verifies it.
func journalAt(t *testing.T, dir string) replicaJournal {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	r := replicaJournal{id: j.ID(), first: j.First()}
	r.last, _ = j.Last()
	r.verified, r.verr = j.Verify(context.Background())
	return r
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
	waitLog(t, b, "b following the stream", "follow: following the leader's stream")
	rollAcrossFailover(t, c, ns, pods, a, b)

	// One history: b's journal is a's journal continued.
	ja, jb := journalAt(t, filepath.Join(dir, "a")), journalAt(t, filepath.Join(dir, "b"))
	if jb.id != ja.id || jb.verr != nil || jb.last <= ja.last/2 {
		t.Fatalf("b's journal: ID %s (a's %s), %d records verified (%v), ends at %d (a's at %d)", jb.id, ja.id, jb.verified, jb.verr, jb.last, ja.last)
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
	if records <= ja.last/2 || rp.Actions == 0 {
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
	t.Logf("a journaled up to %d; b continued journal %s to %d; the stream replays %d records: %s", ja.last, jb.id, jb.last, records, rp.Summary())
}
