package journal

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testLogger logs through t.Log, so retries show up with -v and on failure.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func streamConfig(name string) jetstream.StreamConfig { return jetstream.StreamConfig{Name: name} }

// eventually polls cond until it holds or the deadline passes. It never
// sleeps a fixed time to wait for something: it checks, and checks again.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func openTemp(t testing.TB, opts Options) (*Journal, string) {
	t.Helper()
	dir := t.TempDir()
	j, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, dir
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// entry returns a small observed-pod entry numbered i.
func entry(t testing.TB, i int) Entry {
	t.Helper()
	body, err := EncodeBody(Observed{
		Resource:        "pods",
		Namespace:       "shop",
		Name:            fmt.Sprintf("web-%d", i),
		UID:             fmt.Sprintf("uid-%d", i),
		ResourceVersion: fmt.Sprint(1000 + i),
		Labels:          map[string]string{"app": "web"},
		Pod: &PodFacts{NodeName: "node-1", Phase: "Running", Containers: []Container{
			{Name: "app", Image: "registry.example/web:1.0", Ready: true, Started: true},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return Entry{Kind: KindObserved, Key: fmt.Sprintf("pods/shop/web-%d", i), Body: body}
}

// readAll returns every committed record.
func readAll(t testing.TB, j *Journal) []Record {
	t.Helper()
	var out []Record
	if err := j.Read(context.Background(), 1, func(r Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
