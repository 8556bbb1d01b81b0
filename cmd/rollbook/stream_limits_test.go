package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestStandbyJoinsAStreamPastItsLimits: the stream's limits have removed
// its first records (purged here, as MaxAge and MaxBytes do) when a new
// standby starts with an empty disk. It starts its journal at the
// checkpoint the leader shipped beside the stream, follows, takes over
// when the leader dies mid-rollout and finishes it, patching no pod
// twice. The stream then replays from that checkpoint with no
// divergence, and `journal restore` rebuilds a journal from it.
func TestStandbyJoinsAStreamPastItsLimits(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	url := startTestNATS(t, dir).URL
	nats := journal.NATSConfig{URL: url}
	replica := func(name string) *runProc {
		return spawnRun(t, c, filepath.Join(dir, name), "--namespaces", ns, "--leader-elect", "--leader-elect-namespace", ns,
			"--nats-url", url, "--checkpoint-every", "50", "--stream-checkpoint-every", "1s")
	}
	a := replica("a")
	cluster.Eventually(t, time.Minute, "a leading", leading(a))
	const pods = 16
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: pods, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", pods, time.Minute)

	js, st, closeConn, err := ctl.OpenJetStream(ctx, nats, "ROLLBOOK")
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	var shipped journal.StreamCheckpoint
	cluster.Eventually(t, time.Minute, "a checkpoint beside the stream", func() error {
		id, err := ctl.StreamJournalID(ctx, nats, "ROLLBOOK")
		if err != nil {
			return err
		}
		cps, err := journal.ListStreamCheckpoints(ctx, js, "ROLLBOOK", id)
		if err != nil || len(cps) == 0 {
			return fmt.Errorf("%d checkpoints in the bucket, %v\n%s", len(cps), err, cluster.Tail(a.log, 10))
		}
		shipped = cps[len(cps)-1]
		return nil
	})
	cluster.Eventually(t, time.Minute, "the checkpoint in the leader's metrics", func() error {
		if v := scrapeValue(t, a.metrics, "rollbook_stream_checkpoint_sequence", nil); v < float64(shipped.Seq) {
			return fmt.Errorf("rollbook_stream_checkpoint_sequence is %v; the bucket holds the checkpoint at %d", v, shipped.Seq)
		}
		return nil
	})
	// A record after the checkpoint (an idle leader's newest checkpoint
	// may be at its last record), then the stream's limits remove every
	// record up to the checkpoint.
	annotate := fmt.Sprintf(`{"metadata":{"annotations":{"test/after-checkpoint":"%d"}}}`, shipped.Seq)
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Patch(ctx, "web", types.MergePatchType, []byte(annotate), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, time.Minute, "a record after the checkpoint in the stream", func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.LastSeq <= shipped.Seq {
			return fmt.Errorf("the stream ends at %d, the checkpoint is at %d", info.State.LastSeq, shipped.Seq)
		}
		return nil
	})
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(shipped.Seq+1)); err != nil {
		t.Fatal(err)
	}
	if first, err := journal.StreamFirstRecord(ctx, st); err != nil || first != shipped.Seq+1 {
		t.Fatalf("after the purge the stream starts at record %d (%v), want %d", first, err, shipped.Seq+1)
	}

	b := replica("b")
	waitLog(t, b, "b following the stream from the checkpoint", "checkpoint beside it", "follow: following the leader's stream")
	rollAcrossFailover(t, c, ns, pods, a, b)

	// b's journal is a's, from the checkpoint on.
	ja, jb := journalAt(t, filepath.Join(dir, "a")), journalAt(t, filepath.Join(dir, "b"))
	if jb.id != ja.id || jb.first != shipped.Seq+1 || jb.verr != nil || jb.last <= ja.last {
		t.Fatalf("b's journal: ID %s (a's %s), records %d..%d (a's end at %d), %d verified: %v", jb.id, ja.id, jb.first, jb.last, ja.last, jb.verified, jb.verr)
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

	// The stream replays from the oldest checkpoint it can continue: the
	// one shipped before the purge.
	fromStream := recordSource{nats: nats, stream: "ROLLBOOK"}
	d, rp, records, err := replay(ctx, fromStream, ns+"/web", replayMode{})
	if err != nil {
		t.Fatalf("replaying the stream: %v", err)
	}
	if d != nil {
		t.Fatalf("replay of the stream diverged: %s", d.String())
	}
	if rp.From != shipped.Seq || rp.Actions == 0 {
		t.Fatalf("the stream replayed %d records after the checkpoint at %d (want %d), %d actions compared", records, rp.From, shipped.Seq, rp.Actions)
	}

	// A journal restored from the stream starts at its newest checkpoint.
	restored := filepath.Join(dir, "restored")
	if err := restoreJournal(ctx, restored, fromStream); err != nil {
		t.Fatal(err)
	}
	jr, err := journal.Open(restored, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer jr.Close()
	rLast, rHead := jr.Last()
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// NB: b may journal an outcome or two after its outbox stopped; the
	// restored journal is what the stream holds.
	if _, err := jr.Verify(ctx); err != nil || jr.First() <= shipped.Seq || rLast != info.State.LastSeq {
		t.Fatalf("restored journal: records %d..%d (the stream's end at %d): %v", jr.First(), rLast, info.State.LastSeq, err)
	}
	var streamHead [32]byte
	if err := readStream(ctx, nats, "ROLLBOOK", rLast, func(r journal.Record) error {
		if r.Seq == rLast {
			streamHead = r.Hash
		}
		return nil
	}); err != nil || streamHead != rHead {
		t.Fatalf("the restored journal's record %d is not the stream's: %v", rLast, err)
	}
	t.Logf("the stream starts after the checkpoint at %d; b continued journal %s from %d to %d; replayed %d records: %s", shipped.Seq, jb.id, jb.first, jb.last, records, rp.Summary())
}
