package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// startReloading is startPipeline without NATS, its ingester given
// Options.Reload. What it reloads is read from the journal itself (the
// controller gives its fold's state): the objects as of the first half of
// the records, so the stream must read the rest itself.
func startReloading(t *testing.T, dir string, client dynamic.Interface, ns string) *pipeline {
	t.Helper()
	return startPipeline(t, dir, client, ns, ingest.ListAuto, false, func(j *journal.Journal, o *ingest.Options) {
		o.Reload = func(ctx context.Context) (uint64, map[string]ingest.KnownObject, error) {
			last, _ := j.Last()
			return knownAt(ctx, j, last/2)
		}
	})
}

// knownAt is what the journal knew at record seq: each object's UID and
// resourceVersion as of its last Observed record, without those recorded
// gone.
func knownAt(ctx context.Context, j *journal.Journal, seq uint64) (uint64, map[string]ingest.KnownObject, error) {
	out := map[string]ingest.KnownObject{}
	errStop := errors.New("at seq")
	err := j.Read(ctx, 1, func(r journal.Record) error {
		if r.Seq > seq {
			return errStop
		}
		switch r.Kind {
		case journal.KindVanished:
			delete(out, r.Key)
		case journal.KindObserved:
			var o journal.Observed
			if err := r.Decode(&o); err != nil {
				return err
			}
			if o.Deleted {
				delete(out, r.Key)
			} else {
				out[r.Key] = ingest.KnownObject{UID: o.UID, ResourceVersion: o.ResourceVersion}
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return 0, nil, err
	}
	return seq, out, nil
}

// relabel writes a new version of pod name, recording it.
func relabel(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name, v string, w *writes) {
	t.Helper()
	p, err := c.Clientset().CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"labels":{"v":"`+v+`"}}}`), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.add(ns, name, p.ResourceVersion)
}

// TestKnownSetLetGoAndTakenBack: with Options.Reload, a stream holds its
// known set while it may still meet what the journal has (through its
// list; after a restart, until its watch passes the newest version on
// record, even one another writer journaled past its cursor) and lets it
// go after. When its cursor then expires, it takes the set back and
// reports exactly the pods deleted while no watch could see them. Nothing
// is journaled twice, nothing is missed.
func TestKnownSetLetGoAndTakenBack(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	dir := t.TempDir()
	w := newWrites()
	if err := churnCreate(ctx, c, ns, 30, w); err != nil {
		t.Fatal(err)
	}
	client := readClient(t, c.Config())
	p := startReloading(t, dir, client, ns)
	if err := p.in.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, time.Minute, "pods journaled", func() error { return readJournal(t, p.j).check(w) })
	relabel(ctx, t, c, ns, podName(1), "2", w)
	cluster.Eventually(t, time.Minute, "the known set let go after the list", func() error {
		if n, held := p.in.Stats.Released.Load(), p.in.Held()["pods"]; n != 1 || held != 0 {
			return fmt.Errorf("released %d times, %d objects held", n, held)
		}
		return nil
	})
	cluster.Eventually(t, time.Minute, "the update journaled", func() error { return readJournal(t, p.j).check(w) })
	p.stop(t)

	// While it is down, pods 5 and then 2 change, and another writer
	// journals pod 2's version past the stream's cursor (as the controller
	// does when it reads a pod at restart): the resumed watch delivers it
	// again, after pod 5's, which is past the cursor but not past it.
	relabel(ctx, t, c, ns, podName(5), "2", w)
	relabel(ctx, t, c, ns, podName(2), "2", w)
	u, err := client.Resource(ingest.Pods.GVR).Namespace(ns).Get(ctx, podName(2), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := ingest.Compact(ingest.Pods, u)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	body, err := journal.EncodeBody(&o)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(ctx, nil, journal.Entry{Kind: journal.KindObserved, Key: ingest.Key("pods", ns, podName(2)), Body: body}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	p = startReloading(t, dir, client, ns)
	defer p.stop(t)
	if err := p.in.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, time.Minute, "pod 2's version delivered again and dropped", func() error {
		if p.in.Stats.Duplicates.Load() == 0 {
			return errors.New("no duplicate dropped yet")
		}
		return nil
	})
	relabel(ctx, t, c, ns, podName(3), "2", w)
	cluster.Eventually(t, time.Minute, "the known set let go after the resume", func() error {
		if n, held := p.in.Stats.Released.Load(), p.in.Held()["pods"]; n != 1 || held != 0 {
			return fmt.Errorf("released %d times, %d objects held", n, held)
		}
		return readJournal(t, p.j).check(w)
	})

	// Pods deleted while no watch can see them (the apiserver down, etcd
	// compacted past the cursor): the stream, its set let go, must take it
	// back to report them.
	deleted := map[string]bool{}
	err = c.RestartAPIServerWith(ctx, func(ctx context.Context) error {
		for i := 0; i < 30; i += 3 {
			if err := c.DeleteEtcdKey(ctx, "pods/"+ns+"/"+podName(i)); err != nil {
				return err
			}
			deleted[ingest.Key("pods", ns, podName(i))] = true
			w.del(ns, podName(i))
		}
		rev, err := c.EtcdRevision(ctx)
		if err != nil {
			return err
		}
		return c.CompactEtcd(ctx, rev)
	})
	if err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 2*time.Minute, "the deleted pods reported vanished", func() error {
		if p.in.Stats.Reloaded.Load() != 1 {
			return fmt.Errorf("known set reloaded %d times, want 1 (gone %d)", p.in.Stats.Reloaded.Load(), p.in.Stats.Gone.Load())
		}
		got := readJournal(t, p.j)
		for k, n := range got.vanished {
			if !deleted[k] {
				return fmt.Errorf("%s: %d Vanished records for a pod that was not deleted", k, n)
			}
		}
		return got.check(w)
	})
	relabel(ctx, t, c, ns, podName(4), "2", w)
	cluster.Eventually(t, time.Minute, "the known set let go after the relist", func() error {
		if n, held := p.in.Stats.Released.Load(), p.in.Held()["pods"]; n != 2 || held != 0 {
			return fmt.Errorf("released %d times, %d objects held", n, held)
		}
		return readJournal(t, p.j).check(w)
	})
	if n, err := p.j.Verify(ctx); err != nil {
		t.Fatalf("verify after %d records: %v", n, err)
	}
}
