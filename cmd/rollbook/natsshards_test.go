package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestShardsShareOneNATSServer: two controllers, each managing its own
// namespace (shards, docs/scale.md), publish to one NATS server on their
// own --stream and --subject-prefix. Each stream holds exactly
// its own journal, from record 1, in order, on its own subjects, naming
// only its own namespace (its watch cursors included) or none; neither
// holds a record of the other's. A shard restarted with the same flags
// continues its stream where it stopped, with its outbox cursor kept
// under its stream's name.
func TestShardsShareOneNATSServer(t *testing.T) {
	c := cluster.Shared(t)
	ctx := context.Background()
	dir := t.TempDir()
	url := startTestNATS(t, dir).URL
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	type shard struct {
		ns, stream, prefix, dir string
		proc                    *runProc
		tail                    streamTail
	}
	shards := []*shard{
		{ns: c.Namespace(t), stream: "ROLLBOOK-A", prefix: "rollbook.a"},
		{ns: c.Namespace(t), stream: "ROLLBOOK-B", prefix: "rollbook.b"},
	}
	start := func(s *shard) {
		s.proc = spawnRun(t, c, s.dir, "--namespaces", s.ns, "--leader-elect=false", "--nats-url", url,
			"--stream", s.stream, "--subject-prefix", s.prefix)
	}
	stop := func(s *shard) {
		s.proc.cmd.Process.Signal(syscall.SIGTERM)
		s.proc.cmd.Wait()
	}
	// waitFor polls s's stream until it holds a message with key, which
	// must have been journaled by s.
	waitFor := func(s *shard, key string) {
		t.Helper()
		cluster.Eventually(t, 2*time.Minute, s.stream+" holds "+key, func() error {
			if err := s.tail.read(ctx, js, s.stream); err != nil {
				return fmt.Errorf("%w\n%s", err, cluster.Tail(s.proc.log, 10))
			}
			if !slices.ContainsFunc(s.tail.msgs, func(m *jetstream.RawStreamMsg) bool { return m.Header.Get(journal.HeaderKey) == key }) {
				return fmt.Errorf("%d messages, none about %s\n%s", len(s.tail.msgs), key, cluster.Tail(s.proc.log, 10))
			}
			return nil
		})
	}
	for i, s := range shards {
		s.dir = filepath.Join(dir, fmt.Sprintf("shard-%d", i))
		start(s)
		if _, err := c.Clientset().AppsV1().StatefulSets(s.ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: 1}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range shards {
		waitFor(s, "statefulsets.apps/"+s.ns+"/web")
	}

	// Shard A restarts; what it journals next follows in its stream.
	a := shards[0]
	stop(a)
	start(a)
	if _, err := c.Clientset().AppsV1().StatefulSets(a.ns).Create(ctx, kwokStatefulSet("web2", stsOpts{replicas: 1}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(a, "statefulsets.apps/"+a.ns+"/web2")
	for _, s := range shards {
		stop(s)
	}

	ids := map[string]bool{}
	for _, s := range shards {
		if err := s.tail.read(ctx, js, s.stream); err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(ctx, s.stream)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := st.CachedInfo().Config.Subjects, []string{s.prefix + ".>"}; !slices.Equal(got, want) {
			t.Errorf("stream %s captures %v, want %v", s.stream, got, want)
		}
		j, err := journal.Open(filepath.Join(s.dir, "journal"), journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		id := j.ID()
		ids[id] = true
		cursor, cursorOK, cursorErr := j.Cursor("outbox/" + s.stream)
		_, defaultOK, _ := j.Cursor("outbox/" + journal.DefaultStreamName)
		var recs []journal.Record
		err = j.Read(ctx, 1, func(r journal.Record) error { recs = append(recs, r); return nil })
		j.Close()
		if err != nil {
			t.Fatal(err)
		}

		// Exactly the journal's records 1..n, nothing else: stream sequence
		// i is record i of this shard's journal, on this shard's subject.
		n := len(s.tail.msgs)
		if n == 0 || n > len(recs) {
			t.Fatalf("stream %s holds %d messages; journal %s has %d records", s.stream, n, id, len(recs))
		}
		t.Logf("stream %s: %d messages of journal %s's %d records", s.stream, n, id, len(recs))
		cursors := 0
		for i, m := range s.tail.msgs {
			r := recs[i]
			if got, want := m.Header.Get(jetstream.MsgIDHeader), journal.MsgID(id, r.Seq); m.Sequence != r.Seq || got != want {
				t.Fatalf("stream %s message %d has Msg-Id %q, want %q (record %d of journal %s)", s.stream, m.Sequence, got, want, r.Seq, id)
			}
			if got := m.Header.Get(journal.HeaderHash); got != hex.EncodeToString(r.Hash[:]) {
				t.Fatalf("stream %s message %d has hash %s, the journal's record %x", s.stream, m.Sequence, got, r.Hash[:8])
			}
			if got, want := m.Subject, journal.Subject(s.prefix, r); got != want {
				t.Fatalf("stream %s message %d on %q, want %q", s.stream, m.Sequence, got, want)
			}
			if ns := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]; ns != s.ns && ns != "_" {
				t.Fatalf("stream %s message %d (%s) is about namespace %q, not its shard's %s", s.stream, m.Sequence, r.Key, ns, s.ns)
			}
			if m.Subject == s.prefix+".cursor."+s.ns {
				cursors++
			}
		}
		if cursors == 0 {
			t.Errorf("stream %s holds no watch cursor on %s.cursor.%s", s.stream, s.prefix, s.ns)
		}
		// The outbox's progress is kept under its stream's name, where a
		// restart finds it.
		if cursorErr != nil || !cursorOK || cursor == "0" || defaultOK {
			t.Errorf("journal %s: cursor outbox/%s = %q (%v, %v); outbox/%s present: %v", id, s.stream, cursor, cursorOK, cursorErr, journal.DefaultStreamName, defaultOK)
		}
	}
	if len(ids) != len(shards) {
		t.Fatalf("the shards share a journal ID: %v", ids)
	}
	// Nothing went to the default stream.
	if _, err := js.Stream(ctx, journal.DefaultStreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream %s: %v, want it not to exist", journal.DefaultStreamName, err)
	}
}

// streamTail reads a stream's messages in order, each once across calls.
type streamTail struct {
	msgs []*jetstream.RawStreamMsg
}

func (s *streamTail) read(ctx context.Context, js jetstream.JetStream, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	for seq := uint64(len(s.msgs)) + 1; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return fmt.Errorf("stream %s message %d: %w", name, seq, err)
		}
		s.msgs = append(s.msgs, m)
	}
	return nil
}

// TestRunRefusesBadNATSNames: a stream name or subject prefix NATS cannot
// take stops `rollbook run` at once, naming the flag and why, before it
// connects to anything (here: not even the kubeconfig is read).
func TestRunRefusesBadNATSNames(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "kubeconfig")
	for _, tc := range []struct {
		flag, value, want string
	}{
		{"--stream", "ROLLBOOK.A", `--stream: journal: stream name "ROLLBOOK.A" must not contain '.'`},
		{"--stream", "shard a", "must not contain"},
		{"--stream", "", "--stream: journal: empty stream name"},
		{"--subject-prefix", "rollbook.>", `--subject-prefix: journal: subject prefix "rollbook.>" is not a literal subject`},
		{"--subject-prefix", "rollbook..a", "is not a literal subject"},
		{"--subject-prefix", "", "--subject-prefix: journal: empty subject prefix"},
	} {
		var stdout, stderr bytes.Buffer
		args := []string{"run", "--kubeconfig", missing, "--metrics-addr", "127.0.0.1:0", "--leader-elect=false", tc.flag + "=" + tc.value}
		if code := cli(context.Background(), args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("rollbook %v: exit %d, %q; want exit 1 and %q", args, code, stderr.String(), tc.want)
		}
	}
}
