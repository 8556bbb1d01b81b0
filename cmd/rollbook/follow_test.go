package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
	"rollbook.dev/rollbook/test/cluster"
)

// syncBuffer is a log sink the test reads while the follower writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFollowerStartsAtTheCheckpointBesideTheStream: a leader's stream
// whose limits removed its first records (purged here, as MaxAge does).
// A new standby, empty, starts its journal at the newest checkpoint the
// leader shipped beside the stream and follows it to the leader's last
// record; a standby stopped for longer than the stream keeps moves its
// journal aside, whole, and does the same. Both journals are then the
// leader's from the checkpoint on, and fold to the leader's state.
func TestFollowerStartsAtTheCheckpointBesideTheStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	var recs []journal.Record
	if err := journal.ReadExportFile("../../test/replay/testdata/TestLifecycleHooksHoldAndRelease.jsonl.gz", func(r journal.Record) error {
		recs = append(recs, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n := uint64(len(recs))
	leader, err := journal.Open(filepath.Join(dir, "leader"), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	if err := leader.Import(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	books := projections.NewBooks()
	for _, r := range recs {
		if err := books.Apply(r); err != nil {
			t.Fatal(err)
		}
		if r.Seq == n/4 || r.Seq == n/2 {
			if err := saveCheckpoint(leader, r.Seq, books); err != nil {
				t.Fatal(err)
			}
		}
	}
	want, err := journal.EncodeCheckpoint(books)
	if err != nil {
		t.Fatal(err)
	}

	nats := startTestNATS(t, dir)
	cfg := journal.NATSConfig{URL: nats.URL}
	nc, err := journal.ConnectNATS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ob, err := journal.NewOutbox(leader, nc, journal.OutboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	go ob.Run(octx)
	if err := ob.WaitPublished(ctx, n); err != nil {
		t.Fatal(err)
	}
	if got, err := ob.ShipCheckpoint(ctx, 0, time.Hour); err != nil || got != n/2 {
		t.Fatalf("shipped the checkpoint at %d (%v), want %d", got, err, n/2)
	}
	_, st, closeConn, err := ctl.OpenJetStream(ctx, cfg, journal.DefaultStreamName)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(n/4+10)); err != nil {
		t.Fatal(err)
	}

	// follow runs a standby on jdir until it follows the stream from the
	// checkpoint beside it, then has it catch up and stop, and returns
	// its log.
	follow := func(jdir string) string {
		t.Helper()
		var log syncBuffer
		f := &follower{dir: jdir, nats: cfg, stream: journal.DefaultStreamName, log: slog.New(slog.NewTextHandler(&log, nil))}
		fctx, stopFollowing := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); f.run(fctx, time.Minute) }()
		cluster.Eventually(t, time.Minute, "the standby following from the checkpoint", func() error {
			_, after, ok := strings.Cut(log.String(), "checkpoint beside it")
			if !ok || !strings.Contains(after, "follow: following the leader's stream") {
				return fmt.Errorf("its log:\n%s", log.String())
			}
			return nil
		})
		stopFollowing()
		<-done
		return log.String()
	}
	check := func(name, jdir string) {
		t.Helper()
		j, err := journal.Open(jdir, journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		last, head := j.Last()
		if j.ID() != leader.ID() || j.First() != n/2+1 || last != n || head != recs[n-1].Hash {
			t.Fatalf("%s: journal %s holds records %d..%d; want the leader's %s, %d..%d", name, j.ID(), j.First(), last, leader.ID(), n/2+1, n)
		}
		if _, err := j.Verify(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := loadCheckpoint(j)
		if err == nil {
			err = foldFrom(ctx, j, got)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := journal.EncodeCheckpoint(got)
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("%s: its fold is not the leader's (%v)", name, err)
		}
	}

	fresh := filepath.Join(dir, "fresh")
	follow(fresh)
	check("a new standby", fresh)

	// A standby that stopped at record n/4, before what the stream keeps.
	behind := filepath.Join(dir, "behind")
	old, err := journal.Open(behind, journal.Options{ID: leader.ID()})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Import(ctx, recs[:n/4]...); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if log := follow(behind); !strings.Contains(log, "moving it aside") {
		t.Fatalf("the standby left behind: its log:\n%s", log)
	}
	check("a standby left behind", behind)
	aside, _ := filepath.Glob(behind + ".fork-*")
	if len(aside) != 1 {
		t.Fatalf("moved aside: %v", aside)
	}
	j, err := journal.Open(aside[0], journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if last, _ := j.Last(); last != n/4 {
		t.Fatalf("the journal moved aside ends at %d, want %d", last, n/4)
	}
	if _, err := os.Stat(behind); err != nil {
		t.Fatal(err)
	}
}
