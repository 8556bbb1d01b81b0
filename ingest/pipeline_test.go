package ingest_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/client-go/dynamic"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// pipeline is ingest → journal → outbox → embedded JetStream, in process.
type pipeline struct {
	j      *journal.Journal
	in     *ingest.Ingester
	js     jetstream.JetStream
	cancel context.CancelFunc
	done   chan error
}

// startPipeline starts it on the journal under dir; each of with may set
// the ingester's options further.
func startPipeline(t *testing.T, dir string, client dynamic.Interface, ns string, mode ingest.ListMode, withNATS bool, with ...func(*journal.Journal, *ingest.Options)) *pipeline {
	t.Helper()
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := ingest.Options{Client: client, Journal: j, Resources: []ingest.Resource{ingest.Pods}, Namespaces: []string{ns}, ListMode: mode}
	for _, w := range with {
		w(j, &opts)
	}
	in, err := ingest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{j: j, in: in, cancel: cancel, done: make(chan error, 2)}
	go func() { p.done <- in.Run(ctx) }()
	if withNATS {
		srv, err := journal.StartEmbeddedNATS(filepath.Join(dir, "nats"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		nc, err := journal.ConnectNATS(journal.NATSConfig{Embedded: srv})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ob, err := journal.NewOutbox(j, nc, journal.OutboxOptions{})
		if err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- ob.Run(ctx) }()
		if p.js, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// stop ends the pipeline and closes the journal; the journal is reopened
// by whoever reads it next.
func (p *pipeline) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	n := 1
	if p.js != nil {
		n = 2
	}
	for range n {
		if err := <-p.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("pipeline: %v", err)
		}
	}
	if err := p.j.Close(); err != nil {
		t.Errorf("closing journal: %v", err)
	}
}

// TestChurnJournaledOnce: 5,000 pods created, relabelled and partly deleted
// while the pipeline runs: every change is journaled exactly once, in each
// object's resourceVersion order, and the JetStream stream holds exactly the
// journal's records.
func TestChurnJournaledOnce(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	client := readClient(t, c.Config())
	p := startPipeline(t, t.TempDir(), client, ns, ingest.ListAuto, true)
	defer p.stop(t)
	ctx := context.Background()
	if err := p.in.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	w := newWrites()
	if err := churn(ctx, c.Clientset(), ns, 5000, 16, w); err != nil {
		t.Fatalf("churn: %v", err)
	}
	cluster.Eventually(t, 2*time.Minute, "every write journaled", func() error {
		return readJournal(t, p.j).check(w)
	})
	got := readJournal(t, p.j)
	if n, err := p.j.Verify(ctx); err != nil {
		t.Fatalf("verify after %d records: %v", n, err)
	}
	if p.in.Stats.Relists.Load() != 1 {
		t.Errorf("relists = %d, want exactly the initial one", p.in.Stats.Relists.Load())
	}
	// The stream: exactly the journal's records, in order, one message each.
	cluster.Eventually(t, time.Minute, "stream caught up", func() error {
		s, err := p.js.Stream(ctx, "ROLLBOOK")
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != got.records {
			return errors.New("stream has " + strconv.FormatUint(info.State.Msgs, 10) + " messages, journal " + strconv.FormatUint(got.records, 10))
		}
		return nil
	})
	s, _ := p.js.Stream(ctx, "ROLLBOOK")
	for seq := uint64(1); seq <= got.records; seq += 997 { // spot-check ids along the stream
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("stream message %d: %v", seq, err)
		}
		if id := m.Header.Get("Nats-Msg-Id"); id != journal.MsgID(p.j.ID(), seq) {
			t.Fatalf("stream message %d has Msg-Id %q, want %q", seq, id, journal.MsgID(p.j.ID(), seq))
		}
	}
}

// TestGoneRelistsAndReportsVanished: pods deleted while the pipeline is
// down, with etcd compacted past its cursor, come back as Vanished records
// (deletes in a gap are never delivered), exactly those pods.
func TestGoneRelistsAndReportsVanished(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Clientset()
	dir := t.TempDir()
	w := newWrites()
	if err := churnCreate(ctx, c, ns, 30, w); err != nil {
		t.Fatal(err)
	}
	p := startPipeline(t, dir, readClient(t, c.Config()), ns, ingest.ListAuto, false)
	cluster.Eventually(t, time.Minute, "pods journaled", func() error { return readJournal(t, p.j).check(w) })
	p.stop(t)

	deleted := map[string]bool{}
	for i := 0; i < 30; i += 3 {
		name := podName(i)
		if err := cs.CoreV1().Pods(ns).Delete(ctx, name, deleteNow()); err != nil {
			t.Fatal(err)
		}
		deleted[ingest.Key("pods", ns, name)] = true
	}
	rev, err := c.EtcdRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CompactEtcd(ctx, rev); err != nil {
		t.Fatal(err)
	}
	// A fresh watch cache only serves what etcd still has.
	if err := c.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}

	p = startPipeline(t, dir, readClient(t, c.Config()), ns, ingest.ListAuto, false)
	defer p.stop(t)
	if err := p.in.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if p.in.Stats.Gone.Load() == 0 {
		t.Fatalf("the resumed watch never got 410 Gone; stats %+v", statsOf(p.in))
	}
	got := readJournal(t, p.j)
	for k := range deleted {
		if got.vanished[k] != 1 {
			t.Errorf("%s: %d Vanished records, want 1", k, got.vanished[k])
		}
	}
	for k, n := range got.vanished {
		if !deleted[k] {
			t.Errorf("%s: %d Vanished records for a pod that was not deleted", k, n)
		}
	}
}

// TestStreamingAndPaginatedListsAgree: the WatchList path and the paginated
// fallback journal the same objects.
func TestStreamingAndPaginatedListsAgree(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	w := newWrites()
	if err := churnCreate(ctx, c, ns, 1200, w); err != nil { // > 2 pages of 500
		t.Fatal(err)
	}
	client := readClient(t, c.Config())
	var views []map[string][]string
	for _, mode := range []ingest.ListMode{ingest.ListStreaming, ingest.ListPaginated} {
		p := startPipeline(t, t.TempDir(), client, ns, mode, false)
		if err := p.in.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
		if f := p.in.Stats.StreamFallback.Load(); f != 0 {
			t.Errorf("mode %d: %d fallbacks from streaming list", mode, f)
		}
		got := readJournal(t, p.j)
		if err := got.check(w); err != nil {
			t.Errorf("mode %d: %v", mode, err)
		}
		views = append(views, got.rvs)
		p.stop(t)
	}
	if len(views[0]) != 1200 || len(views[1]) != 1200 {
		t.Fatalf("streaming saw %d pods, paginated %d, want 1200 each", len(views[0]), len(views[1]))
	}
	for k, rvs := range views[0] {
		if rvs[len(rvs)-1] != views[1][k][len(views[1][k])-1] {
			t.Errorf("%s: streaming has %v, paginated %v", k, rvs, views[1][k])
		}
	}
}

func statsOf(in *ingest.Ingester) map[string]int64 {
	return map[string]int64{
		"relists": in.Stats.Relists.Load(), "watches": in.Stats.Watches.Load(),
		"records": in.Stats.Records.Load(), "gone": in.Stats.Gone.Load(), "vanished": in.Stats.Vanished.Load(),
	}
}
