package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestControllerTakesItsKnownSetBack: the controller's ingest lets its
// pods' known set go once its watch is past everything on record. When its
// cursor then expires under it (the apiserver down, etcd compacted), it
// takes the set back from the fold's state: the pod deleted while no watch
// could see it is journaled Vanished, once, and no other pod's version is
// journaled twice. The controller goes on: a rollout over the pods left
// succeeds in place, and the journal replays (running.stop).
func TestControllerTakesItsKnownSetBack(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	r := startController(t, c, t.TempDir(), ns)
	const n = 6
	createBarePods(t, c, ns, "lone-%d", n, map[string]string{"team": "blue"})
	cluster.Eventually(t, 2*time.Minute, "pods ready", func() error { return allReady(c, ns, n) })
	letGo := func(what string) {
		cluster.Eventually(t, time.Minute, what, func() error {
			if held := r.c.in.Held()["pods"]; held != 0 {
				return fmt.Errorf("ingest holds %d pods", held)
			}
			return nil
		})
	}
	letGo("the pods' known set let go")

	gone := ingest.Key("pods", ns, "lone-2")
	if err := c.RestartAPIServerWith(ctx, func(ctx context.Context) error {
		if err := c.DeleteEtcdKey(ctx, "pods/"+ns+"/lone-2"); err != nil {
			return err
		}
		rev, err := c.EtcdRevision(ctx)
		if err != nil {
			return err
		}
		return c.CompactEtcd(ctx, rev)
	}); err != nil {
		t.Fatal(err)
	}
	cluster.Eventually(t, 2*time.Minute, "the pod deleted unseen journaled Vanished", func() error {
		if r.c.in.Stats.Reloaded.Load() == 0 {
			return fmt.Errorf("no known set taken back (410 Gone answers: %d)", r.c.in.Stats.Gone.Load())
		}
		vanished := map[string]int{}
		versions := map[string]bool{}
		err := r.c.j.Read(ctx, 1, func(rec journal.Record) error {
			switch rec.Kind {
			case journal.KindVanished:
				vanished[rec.Key]++
			case journal.KindObserved:
				var o journal.Observed
				if err := rec.Decode(&o); err != nil {
					return err
				}
				v := rec.Key + "@" + o.ResourceVersion
				if o.Resource == "pods" && versions[v] {
					return fmt.Errorf("%s journaled twice", v)
				}
				versions[v] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(vanished) != 1 || vanished[gone] != 1 {
			return fmt.Errorf("Vanished records %v, want one for %s", vanished, gone)
		}
		return nil
	})

	createRollout(t, c, ns, "log-v2", map[string]any{
		"target":     map[string]any{"selector": map[string]any{"matchLabels": map[string]any{"team": "blue"}}},
		"containers": []any{map[string]any{"name": "log", "image": "registry.example/log:v2"}},
		"strategy":   map[string]any{"maxUnavailable": 2},
	})
	waitPhase(t, c, ns, "log-v2", "Succeeded", 2*time.Minute)
	for name, p := range podsByName(t, c, ns) {
		if p.Spec.Containers[1].Image != "registry.example/log:v2" {
			t.Errorf("%s: sidecar not updated", name)
		}
	}
	letGo("the pods' known set let go again after the relist")
}
