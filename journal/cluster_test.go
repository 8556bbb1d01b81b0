package journal

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// clusterNode is one server of a loopback test cluster. Its name, ports and
// store directory stay the same across a restart, like a real node's.
type clusterNode struct {
	name        string
	dir         string
	clientPort  int
	clusterPort int
	routes      []*url.URL // the other nodes' cluster ports
	log         *serverErrors

	mu  sync.Mutex
	srv *server.Server // nil while down
}

func (n *clusterNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

func (n *clusterNode) server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// start starts the node's server: client and cluster listeners on
// loopback, routes to the other nodes, JetStream on the node's store
// directory. It waits until the server accepts clients, not until the
// cluster has formed (see metaReady).
func (n *clusterNode) start() error {
	s, err := server.NewServer(&server.Options{
		ServerName: n.name,
		Host:       "127.0.0.1",
		Port:       n.clientPort,
		Cluster:    server.ClusterOpts{Name: "rollbook-r3", Host: "127.0.0.1", Port: n.clusterPort},
		Routes:     n.routes,
		JetStream:  true,
		StoreDir:   n.dir,
		NoSigs:     true,
	})
	if err != nil {
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	s.SetLogger(n.log.named(n.name), false, false) // before Start: recovery errors count too
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("start %s: not ready for connections after 10s", n.name)
	}
	n.mu.Lock()
	n.srv = s
	n.mu.Unlock()
	return nil
}

func (n *clusterNode) shutdown() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// serverErrors keeps the error lines the cluster's servers log, so a test
// can tell a halted stream from a slow one and show why.
type serverErrors struct {
	mu    sync.Mutex
	lines []string
}

func (e *serverErrors) named(name string) server.Logger { return serverLogger{e, name} }

// halted returns the first error saying a stream stopped for good on a
// server: after a "critical write error" the server no longer applies the
// stream's entries, and no amount of waiting brings it back.
func (e *serverErrors) halted() (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.lines {
		if strings.Contains(l, "critical write error") {
			return l, true
		}
	}
	return "", false
}

// jetStream returns the logged errors about JetStream and streams (not the
// route dial errors while a node is down).
func (e *serverErrors) jetStream() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, l := range e.lines {
		if strings.Contains(strings.ToLower(l), "stream") {
			out = append(out, l)
		}
	}
	return out
}

type serverLogger struct {
	e    *serverErrors
	name string
}

func (l serverLogger) Errorf(format string, v ...any) {
	l.e.mu.Lock()
	defer l.e.mu.Unlock()
	l.e.lines = append(l.e.lines, l.name+": "+fmt.Sprintf(format, v...))
}
func (l serverLogger) Fatalf(format string, v ...any) { l.Errorf("FATAL: "+format, v...) }
func (serverLogger) Noticef(string, ...any)           {}
func (serverLogger) Warnf(string, ...any)             {}
func (serverLogger) Debugf(string, ...any)            {}
func (serverLogger) Tracef(string, ...any)            {}

// freeLoopbackPorts returns n distinct free TCP ports on 127.0.0.1. They are
// held open together while being picked, so they differ from each other;
// another process could still take one before the server binds it.
func freeLoopbackPorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// startCluster starts a 3-node JetStream cluster on loopback and waits, until
// deadline, for it to form: every node routed to the others, one meta
// leader, every node's meta state current.
func startCluster(t testing.TB, deadline time.Time) []*clusterNode {
	t.Helper()
	const size = 3
	ports := freeLoopbackPorts(t, 2*size)
	log := new(serverErrors)
	nodes := make([]*clusterNode, size)
	for i := range nodes {
		nodes[i] = &clusterNode{
			log:         log,
			name:        fmt.Sprintf("rb-%d", i),
			dir:         t.TempDir(),
			clientPort:  ports[2*i],
			clusterPort: ports[2*i+1],
		}
	}
	for i, n := range nodes {
		for k, m := range nodes {
			if k != i {
				n.routes = append(n.routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", m.clusterPort)})
			}
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.shutdown()
		}
	})
	for _, n := range nodes {
		if err := n.start(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Until(deadline), "the cluster to form with a JetStream meta leader", func() bool {
		return metaReady(nodes)
	})
	return nodes
}

// metaReady reports whether all nodes run, exactly one is the JetStream meta
// leader, it sees all nodes as JetStream peers, and every node is current.
func metaReady(nodes []*clusterNode) bool {
	var leader *server.Server
	for _, n := range nodes {
		s := n.server()
		if s == nil || !s.Running() || !s.JetStreamIsClustered() || !s.JetStreamIsCurrent() {
			return false
		}
		if s.JetStreamIsLeader() {
			if leader != nil {
				return false
			}
			leader = s
		}
	}
	return leader != nil && len(leader.JetStreamClusterPeers()) == len(nodes)
}

// countingHandler counts log records by message on top of another handler.
type countingHandler struct {
	slog.Handler
	mu     *sync.Mutex
	counts map[string]int
}

func newCountingHandler(h slog.Handler) countingHandler {
	return countingHandler{Handler: h, mu: new(sync.Mutex), counts: map[string]int{}}
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Message]++
	h.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	h.Handler = h.Handler.WithGroup(g)
	return h
}

func (h countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// streamState is the stream's info from its leader, or nil if it cannot be
// read right now (no leader, reconnecting).
func streamState(js jetstream.JetStream, name string) *jetstream.StreamInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil
	}
	return info
}

// replicasCurrent reports whether info shows a leader and, besides it, want-1
// replicas, all online and current.
func replicasCurrent(info *jetstream.StreamInfo, want int) bool {
	if info == nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != want-1 {
		return false
	}
	for _, p := range info.Cluster.Replicas {
		if !p.Current || p.Offline || p.Lag != 0 {
			return false
		}
	}
	return true
}

// localStreamState is the state of the stream as stored on server s itself
// (not as its leader reports it), from the server's JetStream monitoring.
func localStreamState(s *server.Server, name string) (server.StreamState, bool) {
	info, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return server.StreamState{}, false
	}
	for _, a := range info.AccountDetails {
		for _, sd := range a.Streams {
			if sd.Name == name {
				return sd.State, true
			}
		}
	}
	return server.StreamState{}, false
}

// checkStreamOrdered asserts, in one pass with an ordered consumer, that the
// stream holds exactly the journal's records 1..n: stream sequence i is
// record i, with Msg-Id <journal>-<i>, the Seq, Hash and Kind headers, the
// record's subject and its stored bytes as payload.
func checkStreamOrdered(t testing.TB, j *Journal, js jetstream.JetStream, name, prefix string, n uint64, deadline time.Time) {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n || info.State.FirstSeq != 1 || info.State.LastSeq != n {
		t.Fatalf("stream holds %d messages, seqs %d..%d; want exactly 1..%d", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, n)
	}
	recs := readAll(t, j)
	if uint64(len(recs)) != n {
		t.Fatalf("journal holds %d records, want %d", len(recs), n)
	}
	// Reading is retried from where it stopped on any error (a consumer just
	// created may not be reachable yet: "no responders"); what is read is
	// checked strictly.
	var cons jetstream.Consumer
	var lastErr error
	retry := time.NewTicker(20 * time.Millisecond)
	defer retry.Stop()
	next := uint64(1)
	for next <= n {
		if ctx.Err() != nil {
			t.Fatalf("reading the stream back: %v after %d of %d messages (last error: %v)", ctx.Err(), next-1, n, lastErr)
		}
		if cons == nil {
			if lastErr != nil {
				<-retry.C // not in a hot loop
			}
			if cons, err = st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
				DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: next,
			}); err != nil {
				lastErr = fmt.Errorf("ordered consumer from %d: %w", next, err)
				continue
			}
		}
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			lastErr, cons = fmt.Errorf("fetch from %d: %w", next, err), nil
			continue
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			i := md.Sequence.Stream
			if i != next {
				t.Fatalf("read stream sequence %d, want %d", i, next)
			}
			r := recs[i-1]
			h := m.Headers()
			if got, want := h.Get(jetstream.MsgIDHeader), MsgID(j.ID(), r.Seq); got != want {
				t.Fatalf("stream message %d has Msg-Id %q, want %q", i, got, want)
			}
			if got, want := h.Get(HeaderSeq), strconv.FormatUint(i, 10); got != want {
				t.Fatalf("stream message %d has %s %q, want %q", i, HeaderSeq, got, want)
			}
			if h.Get(HeaderHash) != hex.EncodeToString(r.Hash[:]) || h.Get(HeaderKind) != r.Kind.String() || m.Subject() != Subject(prefix, r) {
				t.Fatalf("stream message %d (%s, %v) does not match record %+v", i, m.Subject(), h, r)
			}
			got, err := DecodeRecord(m.Data())
			if err != nil {
				t.Fatalf("stream message %d: %v", i, err)
			}
			if got.Seq != r.Seq || got.Hash != r.Hash {
				t.Fatalf("stream message %d carries record %d", i, got.Seq)
			}
			next++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			lastErr, cons = fmt.Errorf("fetch from %d: %w", next, err), nil
		}
	}
}

// TestOutboxR3Cluster: a real 3-node JetStream cluster on loopback, the
// outbox's stream at 3 replicas, two writers appending throughout. The
// server leading the stream (and, arranged beforehand, the meta layer) is
// shut down while publishes await their acks: the two others elect new
// leaders and publishing goes on through them; the old leader comes back on
// the same store and ports and catches up. In the end the stream holds
// exactly the journal's records 1..N, in order, no gap, no duplicate, on all
// three replicas, and the outbox never gave up.
func TestOutboxR3Cluster(t *testing.T) {
	start := time.Now()
	deadline := start.Add(50 * time.Second) // every wait below shares it
	nodes := startCluster(t, deadline)
	t.Logf("cluster formed in %v", time.Since(start).Round(time.Millisecond))
	srvLog := nodes[0].log
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range srvLog.jetStream() {
				t.Log("server error: " + l)
			}
		}
	})
	// waitFor polls cond until the shared deadline, and fails at once when
	// a server reports the stream halted: that never heals by waiting.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		eventually(t, time.Until(deadline), what, func() bool {
			if l, ok := srvLog.halted(); ok {
				t.Fatalf("waiting for %s: a server halted the stream: %s", what, l)
			}
			return cond()
		})
	}

	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url()
	}
	j, _ := openTemp(t, Options{})
	nc := connect(t, NATSConfig{URL: strings.Join(urls, ","), ReconnectWait: 50 * time.Millisecond})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logs := newCountingHandler(testLogger(t).Handler())
	ob, err := NewOutbox(j, nc, OutboxOptions{
		Stream:        jetstream.StreamConfig{Name: "RB", Replicas: 3},
		SubjectPrefix: "rb",
		Window:        256,
		AckTimeout:    2 * time.Second,
		MinBackoff:    20 * time.Millisecond,
		MaxBackoff:    250 * time.Millisecond,
		Logger:        slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	stopOutbox := runOutbox(t, ob)

	// The outbox creates the stream even with nothing to publish. Before any
	// record is in flight, put the stream's leader on the meta leader, so
	// that the shutdown below takes both at once: the outbox's session start
	// (CreateOrUpdateStream) then needs a new meta leader as well.
	waitFor("the outbox to create the stream at R3", func() bool { return replicasCurrent(streamState(js, "RB"), 3) })
	var metaName string
	for _, n := range nodes {
		if n.server().JetStreamIsLeader() {
			metaName = n.name
		}
	}
	// The stepdown request is repeated (at most once a second) until it
	// took: a request can go unanswered while the group settles.
	stepdown, _ := json.Marshal(server.JSApiLeaderStepdownRequest{Placement: &server.Placement{Preferred: metaName}})
	var asked time.Time
	waitFor("the stream leader to be the meta leader "+metaName, func() bool {
		info := streamState(js, "RB")
		if replicasCurrent(info, 3) && info.Cluster.Leader == metaName {
			return true
		}
		if time.Since(asked) > time.Second {
			asked = time.Now()
			if _, err := nc.Request("$JS.API.STREAM.LEADER.STEPDOWN.RB", stepdown, time.Second); err != nil {
				t.Logf("stream leader stepdown request: %v (will ask again)", err)
			}
		}
		return false
	})
	// The server to shut down is the one the stream info names as leader.
	info := streamState(js, "RB")
	if info == nil || info.Cluster == nil {
		t.Fatal("stream info unavailable")
	}
	var victim *clusterNode
	for _, n := range nodes {
		if n.name == info.Cluster.Leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}
	metaToo := victim.server().JetStreamIsLeader()

	// Two writers append throughout, in bursts of 16 records (so the outbox
	// often has many publishes in flight), paced so that N stays in the tens
	// of thousands.
	ctx := testCtx(t)
	var appended sync.WaitGroup
	stopAppends := make(chan struct{})
	var stopOnce sync.Once
	stopAppending := func() {
		stopOnce.Do(func() { close(stopAppends) })
		appended.Wait()
	}
	t.Cleanup(stopAppending)
	for w := range 2 {
		appended.Add(1)
		go func() {
			defer appended.Done()
			pace := time.NewTicker(16 * time.Millisecond) // ~2000 records/s in all
			defer pace.Stop()
			for c := 0; ; c++ {
				select {
				case <-stopAppends:
					return
				case <-pace.C:
				}
				es := make([]Entry, 16)
				for k := range es {
					es[k] = entry(t, w*1000000+c*len(es)+k)
				}
				if _, err := j.Append(ctx, nil, es...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	waitFor("records published", func() bool { return ob.Published() > 300 })

	// Shut the leader down at a moment the outbox has publishes awaiting
	// their acks, so some are lost with it or answered by nobody.
	var publishedAtKill, lastAtKill uint64
	var inflightAtKill int
	waitFor("publishes in flight", func() bool {
		if inflightAtKill = ob.js.PublishAsyncPending(); inflightAtKill < 16 {
			return false
		}
		victim.shutdown()
		publishedAtKill = ob.Published()
		lastAtKill, _ = j.Last()
		return true
	})
	killed := time.Now()
	t.Logf("shut down %s, the stream's leader (meta leader too: %v), with %d publishes in flight; published=%d, journal last=%d",
		victim.name, metaToo, inflightAtKill, publishedAtKill, lastAtKill)

	// Publishing resumes through a new leader on the two survivors, past
	// what had been appended when the leader went away.
	var newLeader string
	waitFor("a new stream leader and publishing past the records appended before the shutdown", func() bool {
		if ob.Published() <= lastAtKill+100 {
			return false
		}
		info := streamState(js, "RB")
		if info == nil || info.Cluster == nil || info.Cluster.Leader == "" || info.Cluster.Leader == victim.name {
			return false
		}
		newLeader = info.Cluster.Leader
		return true
	})
	t.Logf("new stream leader %s; published %d, past the shutdown's %d, %v after it",
		newLeader, ob.Published(), lastAtKill, time.Since(killed).Round(time.Millisecond))

	if err := victim.start(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	publishedAtRestart := ob.Published()
	waitFor("the restarted node to rejoin: 3 current replicas, publishing going on", func() bool {
		return metaReady(nodes) && ob.Published() > publishedAtRestart+100 && replicasCurrent(streamState(js, "RB"), 3)
	})
	t.Logf("%s rejoined and is current %v after its restart", victim.name, time.Since(restarted).Round(time.Millisecond))

	stopAppending()
	last, _ := j.Last()
	waitFor(fmt.Sprintf("the outbox to publish all %d records", last), func() bool { return ob.Published() == last })

	// All three replicas current, and each server's own copy of the stream
	// is exactly 1..last.
	waitFor("3 current replicas, each storing exactly 1..last", func() bool {
		info := streamState(js, "RB")
		if !replicasCurrent(info, 3) || info.State.Msgs != last || info.State.LastSeq != last {
			return false
		}
		for _, n := range nodes {
			st, ok := localStreamState(n.server(), "RB")
			if !ok || st.Msgs != last || st.FirstSeq != 1 || st.LastSeq != last || st.NumDeleted != 0 {
				return false
			}
		}
		return true
	})
	checkStreamOrdered(t, j, js, "RB", "rb", last, deadline)

	if err := stopOutbox(); !errors.Is(err, context.Canceled) {
		t.Fatalf("outbox Run ended with %v, want context.Canceled (it must never give up)", err)
	}
	if v, ok, err := j.Cursor("outbox/RB"); err != nil || !ok || v != strconv.FormatUint(last, 10) {
		t.Fatalf("outbox cursor = %q %v %v, want %d", v, ok, err, last)
	}
	t.Logf("%d records (%d appended after the shutdown) in %v; outbox: %d resyncs, %d stalls, %d lost-record warnings",
		last, last-lastAtKill, time.Since(start).Round(time.Millisecond),
		logs.count("journal: outbox: resyncing with stream"),
		logs.count("journal: outbox: publishing stalled, will retry"),
		logs.count("journal: outbox: stream lost acknowledged records, republishing"))
}
