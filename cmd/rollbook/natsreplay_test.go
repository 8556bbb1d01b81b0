package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestReplayFromNATSStream: an auditor with only the JetStream stream (no
// access to the controller's disk) replays a rollout and gets exactly what
// the journal holds: the same records, chain intact, no divergence.
func TestReplayFromNATSStream(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	url := startTestNATS(t, dir).URL

	cfg, err := c.ServiceAccountConfig(ctx, ns, "rollbook")
	if err != nil {
		t.Fatal(err)
	}
	grantRollbook(t, c, ns)
	ctrl, err := newController(controllerOptions{
		Config: cfg, JournalDir: filepath.Join(dir, "journal"), Namespaces: []string{ns},
		NATS: journal.NATSConfig{URL: url}, QPS: 500, Burst: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ctrl.run(cctx) }()
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: 6, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 6, time.Minute)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 2}))
	waitPhase(t, c, ns, "web", "Succeeded", 2*time.Minute)
	// The stream catches up with the journal (the outbox is asynchronous).
	var want uint64
	cluster.Eventually(t, time.Minute, "stream holds the journal", func() error {
		want = ctrl.folded.Load()
		if got := ctrl.ob.Published(); got < want {
			return fmt.Errorf("published %d of %d", got, want)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	fromStream := recordSource{nats: journal.NATSConfig{URL: url}, stream: "ROLLBOOK"}
	fromDisk := recordSource{dir: filepath.Join(dir, "journal")}
	var streamed, onDisk uint64
	var streamHead, diskHead [32]byte
	if err := fromStream.read(ctx, func(r journal.Record) error { streamed, streamHead = r.Seq, r.Hash; return nil }); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	// NB: an outcome or two may be journaled after the outbox stopped; the
	// stream must hold at least what the rollout needed, identically.
	if err := fromDisk.read(ctx, func(r journal.Record) error {
		onDisk = r.Seq
		if r.Seq == streamed {
			diskHead = r.Hash
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if streamed < want || streamHead != diskHead {
		t.Fatalf("stream has %d records (head %x), journal %d (hash at %d: %x), rollout done at %d", streamed, streamHead[:6], onDisk, streamed, diskHead[:6], want)
	}
	d, rp, n, err := replay(ctx, fromStream, ns+"/web", replayMode{})
	if err != nil {
		t.Fatal(err)
	}
	if d != nil {
		t.Fatalf("replay from the stream diverged: %s", d.String())
	}
	if rp.Actions == 0 {
		t.Fatal("nothing compared")
	}
	t.Logf("replayed %d records from %s: %s", n, url, rp.Summary())

	// The repair path: a journal lost with its disk (restored into an
	// empty directory) or cut back before a bad record (truncate, then
	// restore) continues the same journal, the same chain, from the stream.
	orig, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id := orig.ID()
	orig.Close()
	restored := filepath.Join(dir, "restored")
	if err := journalCmd(ctx, []string{"restore", "--dir", restored, "--nats-url", url}); err != nil {
		t.Fatal(err)
	}
	if err := journalCmd(ctx, []string{"truncate", "--dir", filepath.Join(dir, "journal"), "--after", fmt.Sprint(streamed / 2)}); err != nil {
		t.Fatal(err)
	}
	if err := journalCmd(ctx, []string{"restore", "--dir", filepath.Join(dir, "journal"), "--nats-url", url}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{restored, filepath.Join(dir, "journal")} {
		j, err := journal.Open(d, journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		seq, head := j.Last()
		n, verr := j.Verify(ctx)
		gotID := j.ID()
		j.Close()
		if verr != nil || n != streamed || seq != streamed || head != streamHead || gotID != id {
			t.Fatalf("%s after restore: %d records verified (%v), ends at %d head %x, journal %s; want %d, head %x, journal %s",
				d, n, verr, seq, head[:6], gotID, streamed, streamHead[:6], id)
		}
	}
}
