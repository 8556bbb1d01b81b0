package journal

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func startNATS(t testing.TB, dir string, opts ...EmbeddedOption) *server.Server {
	t.Helper()
	s, err := StartEmbeddedNATS(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t testing.TB, cfg NATSConfig) *nats.Conn {
	t.Helper()
	nc, err := ConnectNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runOutbox starts ob.Run and returns a func that stops it and returns
// Run's error.
func runOutbox(t testing.TB, ob *Outbox) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("outbox Run did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// streamMsgs returns the stream's message count, or -1 if it cannot be read
// (NATS down, stream not created yet).
func streamMsgs(js jetstream.JetStream, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.State.Msgs)
}

// checkStream asserts the stream holds exactly the journal's records 1..n,
// stream sequence i holding record i: in order, no gap, no duplicate, each
// with its Msg-Id, subject, headers and the stored bytes as payload.
func checkStream(t testing.TB, j *Journal, js jetstream.JetStream, name, prefix string, n uint64) {
	t.Helper()
	ctx := testCtx(t)
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n || info.State.FirstSeq != 1 || info.State.LastSeq != n {
		t.Fatalf("stream holds %d messages, seqs %d..%d; want exactly 1..%d", info.State.Msgs, info.State.FirstSeq, info.State.LastSeq, n)
	}
	recs := readAll(t, j)
	for i := uint64(1); i <= n; i++ {
		m, err := s.GetMsg(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		r := recs[i-1]
		if got, want := m.Header.Get(jetstream.MsgIDHeader), MsgID(j.ID(), r.Seq); got != want {
			t.Fatalf("stream message %d has Msg-Id %q, want %q", i, got, want)
		}
		if got, want := m.Subject, Subject(prefix, r); got != want {
			t.Fatalf("stream message %d subject %q, want %q", i, got, want)
		}
		if m.Header.Get(HeaderSeq) != strconv.FormatUint(r.Seq, 10) ||
			m.Header.Get(HeaderKind) != r.Kind.String() ||
			m.Header.Get(HeaderKey) != r.Key ||
			m.Header.Get(HeaderHash) != hex.EncodeToString(r.Hash[:]) ||
			m.Header.Get(HeaderTime) != r.Time.Format(time.RFC3339Nano) {
			t.Fatalf("stream message %d headers %v do not match record %+v", i, m.Header, r)
		}
		got, err := DecodeRecord(m.Data)
		if err != nil {
			t.Fatalf("stream message %d: %v", i, err)
		}
		if got.Hash != r.Hash || got.Seq != r.Seq {
			t.Fatalf("stream message %d payload is record %d", i, got.Seq)
		}
	}
}

func appendN(t testing.TB, j *Journal, from, n int) {
	t.Helper()
	ctx := testCtx(t)
	for i := from; i < from+n; i += 10 {
		var es []Entry
		for k := i; k < i+10 && k < from+n; k++ {
			e := entry(t, k)
			switch k % 4 {
			case 1:
				e.Key = fmt.Sprintf("nodes/node-%d", k)
			case 2:
				e.Key = fmt.Sprintf("inplacerollouts.rollbook.dev/team-%d/web", k%3)
				e.Kind = KindActionIntended
			case 3:
				e.Kind = KindTick
				e.Key = "tick"
			}
			es = append(es, e)
		}
		if _, err := j.Append(ctx, nil, es...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOutboxPublishesInOrder: N committed records end up in the stream as
// exactly N messages, in order, with Msg-Id <journal>-<seq>, the subject
// and headers derived from each record, a lower-case traceparent when the
// hook gives one, and the stored bytes as payload; the outbox cursor ends
// at N. Records appended while it runs follow.
func TestOutboxPublishesInOrder(t *testing.T) {
	j, dir := openTemp(t, Options{})
	s := startNATS(t, dir+"-nats")
	nc := connect(t, NATSConfig{Embedded: s})
	appendN(t, j, 0, 300)

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ob, err := NewOutbox(j, nc, OutboxOptions{
		Stream:        jetstream.StreamConfig{Name: "RB", MaxAge: time.Hour, Duplicates: time.Minute},
		SubjectPrefix: "rb",
		Window:        64,
		Logger:        discardLogger(),
		TraceParent: func(r Record) string {
			if r.Kind == KindActionIntended {
				return tp
			}
			return ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runOutbox(t, ob)
	appendN(t, j, 300, 200) // while it runs
	js, _ := jetstream.New(nc)
	eventually(t, 30*time.Second, "500 records published", func() bool { return ob.Published() == 500 })
	checkStream(t, j, js, "RB", "rb", 500)

	st, _ := js.Stream(testCtx(t), "RB")
	for i := uint64(1); i <= 8; i++ {
		m, _ := st.GetMsg(testCtx(t), i)
		want := ""
		if m.Header.Get(HeaderKind) == KindActionIntended.String() {
			want = tp
		}
		if got := m.Header[HeaderTraceParent]; (want == "" && got != nil) || (want != "" && (len(got) != 1 || got[0] != want)) {
			t.Fatalf("message %d: traceparent %v, want %q (lower-case key)", i, got, want)
		}
	}
	if v, ok, err := j.Cursor("outbox/RB"); err != nil || !ok || v != "500" {
		t.Fatalf("outbox cursor = %q %v %v", v, ok, err)
	}
}

// TestOutboxRestartPublishesNothingTwice: an outbox restarted with its
// cursor behind what the stream holds (a crash between ack and cursor
// write) resumes after the stream's last message and republishes nothing;
// a record republished by hand inside the duplicate window is dropped by
// the server as a duplicate of its Msg-Id.
func TestOutboxRestartPublishesNothingTwice(t *testing.T) {
	j, dir := openTemp(t, Options{})
	s := startNATS(t, dir+"-nats")
	nc := connect(t, NATSConfig{Embedded: s})
	js, _ := jetstream.New(nc)
	opts := OutboxOptions{Stream: jetstream.StreamConfig{Name: "RB"}, SubjectPrefix: "rb", Logger: discardLogger()}
	appendN(t, j, 0, 200)
	ob, err := NewOutbox(j, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := runOutbox(t, ob)
	eventually(t, 30*time.Second, "200 published", func() bool { return ob.Published() == 200 })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}

	// Roll the cursor back: the last 50 are an already-published tail.
	if err := j.SetCursor(Cursor{Name: "outbox/RB", Value: "150"}); err != nil {
		t.Fatal(err)
	}
	ob2, err := NewOutbox(j, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ob2.Published() != 150 {
		t.Fatalf("restarted outbox starts at %d, want 150", ob2.Published())
	}
	runOutbox(t, ob2)
	appendN(t, j, 200, 20)
	eventually(t, 30*time.Second, "220 published", func() bool { return ob2.Published() == 220 })
	checkStream(t, j, js, "RB", "rb", 220)

	// By hand: record 210 again, same Msg-Id: a duplicate, not stored.
	var r210 Record
	j.Read(testCtx(t), 210, func(r Record) error { r210 = r; return ErrStop })
	ack, err := js.Publish(testCtx(t), Subject("rb", r210), []byte("again"), jetstream.WithMsgID(MsgID(j.ID(), 210)))
	if err != nil || !ack.Duplicate || ack.Sequence != 210 {
		t.Fatalf("republish of 210: %+v %v, want a duplicate of stream seq 210", ack, err)
	}
	if n := streamMsgs(js, "RB"); n != 220 {
		t.Fatalf("stream holds %d after the duplicate, want 220", n)
	}
}

// TestOutboxStreamAheadWaits: a stream holding a record of this journal
// beyond its end (a journal restored from an old backup, a forged Msg-Id)
// does not stop Run, nor is it written over: the outbox waits, retrying,
// and resumes after that record once the journal has passed it.
func TestOutboxStreamAheadWaits(t *testing.T) {
	j, dir := openTemp(t, Options{})
	s := startNATS(t, dir+"-nats")
	nc := connect(t, NATSConfig{Embedded: s})
	js, _ := jetstream.New(nc)
	appendN(t, j, 0, 5)
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: "RB", Subjects: []string{"rb.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(testCtx(t), "rb.tick._", nil, jetstream.WithMsgID(MsgID(j.ID(), 20))); err != nil {
		t.Fatal(err)
	}
	ob, err := NewOutbox(j, nc, OutboxOptions{Stream: jetstream.StreamConfig{Name: "RB"}, SubjectPrefix: "rb", Logger: discardLogger(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	appendN(t, j, 5, 20) // the journal reaches 25, past the stream's 20
	eventually(t, 30*time.Second, "resumed after record 20", func() bool { return ob.Published() == 25 })
	select {
	case err := <-done:
		t.Fatalf("Run stopped: %v", err)
	default:
	}
	if n := streamMsgs(js, "RB"); n != 6 {
		t.Fatalf("stream holds %d messages, want the one it had and records 21-25", n)
	}
}

// TestOutboxSurvivesNATSRestart: NATS (a TCP server, like an external
// one) is shut down while records are being appended and published; Append
// keeps working while it is down; it restarts on the same store directory
// and port; the outbox reconnects and the stream catches up to exactly the
// journal: no gap, no duplicate, in order.
func TestOutboxSurvivesNATSRestart(t *testing.T) {
	j, dir := openTemp(t, Options{})
	natsDir := dir + "-nats"
	s, err := StartEmbeddedNATS(natsDir, NATSListen("127.0.0.1", -1))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	servers := []*server.Server{s}
	t.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	nc := connect(t, NATSConfig{URL: s.ClientURL(), ReconnectWait: 50 * time.Millisecond})
	ob, err := NewOutbox(j, nc, OutboxOptions{
		Stream:        jetstream.StreamConfig{Name: "RB"},
		SubjectPrefix: "rb",
		Window:        32,
		AckTimeout:    time.Second,
		MinBackoff:    20 * time.Millisecond,
		MaxBackoff:    200 * time.Millisecond,
		Logger:        testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	runOutbox(t, ob)

	// Appends run throughout, in small calls, from two writers.
	ctx := testCtx(t)
	var appended sync.WaitGroup
	stopAppends := make(chan struct{})
	for w := 0; w < 2; w++ {
		appended.Add(1)
		go func() {
			defer appended.Done()
			for c := 0; ; c++ {
				select {
				case <-stopAppends:
					return
				default:
				}
				if _, err := j.Append(ctx, nil, entry(t, w*100000+c)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	eventually(t, 30*time.Second, "some records published", func() bool { return ob.Published() > 200 })

	s.Shutdown() // mid-run: publishes and acks are in flight
	s.WaitForShutdown()
	down, _ := j.Last()
	eventually(t, 30*time.Second, "appends to go on while NATS is down", func() bool {
		last, _ := j.Last()
		return last > down+300
	})
	publishedWhileDown := ob.Published()
	// A plan's actions wait for their intents in the stream, boundedly:
	// while NATS is down the wait ends at its deadline.
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err = ob.WaitPublished(wctx, down+300)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitPublished while NATS is down: %v, want the deadline", err)
	}

	s2, err := StartEmbeddedNATS(natsDir, NATSListen("127.0.0.1", port))
	if err != nil {
		t.Fatal(err)
	}
	servers = append(servers, s2)
	eventually(t, 30*time.Second, "publishing to resume", func() bool { return ob.Published() > publishedWhileDown+100 })
	close(stopAppends)
	appended.Wait()
	last, _ := j.Last()
	wctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	err = ob.WaitPublished(wctx, last)
	cancel()
	if err != nil || ob.Published() != last {
		t.Fatalf("WaitPublished(%d) once NATS is back: %v, published %d", last, err, ob.Published())
	}
	js, _ := jetstream.New(nc)
	checkStream(t, j, js, "RB", "rb", last)
	t.Logf("%d records; NATS went down at %d, outbox had %d when it came back", last, down, publishedWhileDown)
}

// TestStartEmbeddedNATSNoListener: by default the embedded server binds no
// port and is reachable in process only.
func TestStartEmbeddedNATSNoListener(t *testing.T) {
	s := startNATS(t, t.TempDir())
	if addr := s.Addr(); addr != nil {
		t.Fatalf("embedded server listens on %v", addr)
	}
	nc := connect(t, NATSConfig{Embedded: s})
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := ConnectNATS(NATSConfig{}); err == nil {
		t.Fatal("empty NATSConfig accepted")
	}
	if _, err := ConnectNATS(NATSConfig{URL: "nats://127.0.0.1:1", CertFile: "c.pem"}); err == nil {
		t.Fatal("CertFile without KeyFile accepted")
	}
}

// TestOutboxResyncsAfterForeignMessage: when another writer's message
// lands on the stream between two records, the server refuses the next
// record (its expected last Msg-Id no longer matches); the outbox resyncs
// and goes on without losing or repeating a record.
func TestOutboxResyncsAfterForeignMessage(t *testing.T) {
	j, dir := openTemp(t, Options{})
	s := startNATS(t, dir+"-nats")
	nc := connect(t, NATSConfig{Embedded: s})
	js, _ := jetstream.New(nc)
	ob, err := NewOutbox(j, nc, OutboxOptions{Stream: jetstream.StreamConfig{Name: "RB"}, SubjectPrefix: "rb", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runOutbox(t, ob)
	appendN(t, j, 0, 50)
	eventually(t, 30*time.Second, "50 published", func() bool { return ob.Published() == 50 })
	if _, err := js.Publish(testCtx(t), "rb.tick._", []byte("foreign"), jetstream.WithMsgID("someone-else-1")); err != nil {
		t.Fatal(err)
	}
	appendN(t, j, 50, 50)
	eventually(t, 30*time.Second, "100 published", func() bool { return ob.Published() == 100 })
	st, _ := js.Stream(testCtx(t), "RB")
	info, _ := st.Info(testCtx(t))
	if info.State.Msgs != 101 {
		t.Fatalf("stream holds %d messages, want 100 records + 1 foreign", info.State.Msgs)
	}
	for i := uint64(1); i <= 101; i++ {
		m, err := st.GetMsg(testCtx(t), i)
		if err != nil {
			t.Fatal(err)
		}
		want := MsgID(j.ID(), i)
		switch {
		case i == 51:
			want = "someone-else-1"
		case i > 51:
			want = MsgID(j.ID(), i-1)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != want {
			t.Fatalf("stream message %d is %q, want %q", i, got, want)
		}
	}
}

// TestOutboxRepublishesWhatTheStreamLost: a server that acknowledged
// records and then lost them (its file store acks before fsync) holds
// fewer than the outbox cursor says; the outbox trusts the stream's last
// message over its cursor and republishes the rest from the journal.
func TestOutboxRepublishesWhatTheStreamLost(t *testing.T) {
	j, dir := openTemp(t, Options{})
	s := startNATS(t, dir+"-nats")
	nc := connect(t, NATSConfig{Embedded: s})
	js, _ := jetstream.New(nc)
	appendN(t, j, 0, 100)
	// The state a lossy crash leaves: records 1..60 in the stream, the
	// cursor at 100.
	if _, err := js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: "RB", Subjects: []string{"rb.>"}}); err != nil {
		t.Fatal(err)
	}
	if err := j.Read(testCtx(t), 1, func(r Record) error {
		if r.Seq > 60 {
			return ErrStop
		}
		_, err := js.Publish(testCtx(t), Subject("rb", r), nil, jetstream.WithMsgID(MsgID(j.ID(), r.Seq)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := j.SetCursor(Cursor{Name: "outbox/RB", Value: "100"}); err != nil {
		t.Fatal(err)
	}
	ob, err := NewOutbox(j, nc, OutboxOptions{Stream: jetstream.StreamConfig{Name: "RB"}, SubjectPrefix: "rb", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runOutbox(t, ob)
	st, _ := js.Stream(testCtx(t), "RB")
	eventually(t, 30*time.Second, "the stream to hold 100 again", func() bool {
		info, err := st.Info(testCtx(t))
		return err == nil && info.State.Msgs == 100 && ob.Published() == 100
	})
	for i := uint64(1); i <= 100; i++ {
		m, err := st.GetMsg(testCtx(t), i)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.Header.Get(jetstream.MsgIDHeader), MsgID(j.ID(), i); got != want {
			t.Fatalf("stream message %d is %q, want %q", i, got, want)
		}
	}
}
