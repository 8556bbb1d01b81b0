package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// TestProbeReadiness: what /readyz answers in each state of the process.
func TestProbeReadiness(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	leading := probe{leading: true, started: true, plans: 3, watch: ingest.Health{Synced: true}}
	with := func(f func(*probe)) probe { p := leading; f(&p); return p }
	for _, tc := range []struct {
		name string
		p    probe
		want string // "" for ready, else a part of the reason
	}{
		{"standing by", probe{standby: true}, ""},
		{"electing", probe{}, "starting"},
		{"leading", leading, ""},
		{"folding the journal", with(func(p *probe) { p.started, p.plans = false, 0 }), "folding the journal"},
		{"watches not synced", with(func(p *probe) { p.watch.Synced, p.plans = false, 0 }), "sync"},
		{"no plan yet", with(func(p *probe) { p.plans = 0 }), "no plan"},
		{"watch failing briefly", with(func(p *probe) {
			p.watch.FailingSince, p.watch.Failing = now.Add(-time.Minute), "pods in shop watch failing: connection refused"
		}), ""},
		{"watch broken for long", with(func(p *probe) {
			p.watch.FailingSince, p.watch.Failing = now.Add(-3*time.Minute), "pods in shop watch failing: connection refused"
		}), "pods in shop watch failing: connection refused (for 3m0s)"},
		{"journal failing", with(func(p *probe) { p.journal = "journal closed" }), "journal closed"},
		{"lease lost", with(func(p *probe) { p.leadEnded = true }), "no longer leading"},
		{"stopped", probe{stopped: true}, "stopped"},
	} {
		got := tc.p.ready(now)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: ready says %q, want %q", tc.name, got, tc.want)
		}
	}
	// Liveness ignores everything a restart cannot mend.
	for _, p := range []probe{{}, {standby: true}, with(func(p *probe) { p.watch.FailingSince = now.Add(-time.Hour) }), with(func(p *probe) { p.leadEnded = true })} {
		if why := p.live(); why != "" {
			t.Errorf("%+v: not live: %s", p, why)
		}
	}
	if why := with(func(p *probe) { p.journal = "journal closed" }).live(); why != "journal closed" {
		t.Errorf("a closed journal is live: %q", why)
	}
}

// TestJournalWatch: commits outstanding with the journal not moving for
// journalStuckAfter make it failing; a busy journal, whose commits keep
// returning, never does.
func TestJournalWatch(t *testing.T) {
	var w journalWatch
	t0 := time.Unix(1_800_000_000, 0)
	steps := []struct {
		at   time.Duration
		s    journal.Stats
		want string
	}{
		{0, journal.Stats{Committed: 10}, ""},
		{time.Second, journal.Stats{Committed: 10, Uncommitted: 5}, ""},
		{20 * time.Second, journal.Stats{Committed: 15, Uncommitted: 5}, ""}, // moving: busy
		{45 * time.Second, journal.Stats{Committed: 20, Uncommitted: 2}, ""},
		{74 * time.Second, journal.Stats{Committed: 20, Uncommitted: 2}, ""},
		{76 * time.Second, journal.Stats{Committed: 20, Uncommitted: 2}, "2 records after 20 not committed for 31s"},
		{80 * time.Second, journal.Stats{Committed: 22}, ""},
		{81 * time.Second, journal.Stats{Committed: 22, Closed: true}, "journal closed"},
	}
	for _, s := range steps {
		if got := w.check(s.s, t0.Add(s.at)); got != s.want && !(s.want != "" && strings.Contains(got, s.want)) {
			t.Errorf("at %s with %+v: %q, want %q", s.at, s.s, got, s.want)
		}
	}
}

// TestProbesFailWhenJournalFails: a controller leading against the real
// apiserver is live and ready; once its journal is closed under it,
// /healthz and /readyz answer 503 naming the journal, and /metrics says
// the journal is unhealthy.
func TestProbesFailWhenJournalFails(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	r := startController(t, c, t.TempDir(), ns)
	srv := &metricsServer{}
	leadCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.lead(leadCtx, r.c)
	url, get := probeServer(t, srv)
	cluster.Eventually(t, time.Minute, "leading and ready", func() error {
		if code, body := get("/readyz"); code != 200 || body != "ok: leading" {
			return fmt.Errorf("readyz: %d %s", code, body)
		}
		if code, body := get("/healthz"); code != 200 {
			return fmt.Errorf("healthz: %d %s", code, body)
		}
		return nil
	})
	if v := scrapeValue(t, url, "rollbook_journal_healthy", nil); v != 1 {
		t.Fatalf("rollbook_journal_healthy is %v while the journal works", v)
	}

	r.c.j.Close()
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusServiceUnavailable || !strings.Contains(body, "journal closed") {
			t.Errorf("%s with the journal closed: %d %s", path, code, body)
		}
	}
	if v := scrapeValue(t, url, "rollbook_journal_healthy", nil); v != 0 {
		t.Errorf("rollbook_journal_healthy is %v with the journal closed", v)
	}
	// The controller stops on its own: its readers end with the journal.
	select {
	case err := <-r.done:
		t.Logf("controller stopped: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the controller still runs a minute after its journal closed")
	}
	r.cancel()
	r.cancel = nil
	srv.set(nil)
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopped") {
		t.Errorf("/healthz after the controller stopped: %d %s", code, body)
	}
}

// probeServer serves srv's probes and metrics; get returns a path's status
// and body.
func probeServer(t *testing.T, srv *metricsServer) (url string, get func(path string) (int, string)) {
	hs := httptest.NewServer(srv.mux())
	t.Cleanup(hs.Close)
	return hs.URL, func(path string) (int, string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
}

// TestNotReadyWhileWatchesAreForbidden: a controller whose ServiceAccount
// may not list or watch anything yet (its RBAC not bound) stays live and
// not ready, and /metrics shows its watches unsynced and failing; once the
// ClusterRole is bound the watches sync on their next retry and it turns
// ready.
func TestNotReadyWhileWatchesAreForbidden(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	dir := t.TempDir()
	cfg, err := c.ServiceAccountConfig(context.Background(), ns, "rollbook")
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "rollbook.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	ctrl, err := newController(controllerOptions{
		Config: cfg, JournalDir: filepath.Join(dir, "journal"), Namespaces: []string{ns}, NoNATS: true,
		Logger: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: ctrl, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- ctrl.run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	srv := &metricsServer{}
	srv.lead(ctx, ctrl)
	url, get := probeServer(t, srv)

	cluster.Eventually(t, 30*time.Second, "watches reported failing", func() error {
		if v := scrapeValue(t, url, "rollbook_watch_failing_seconds", nil); v <= 0 {
			return fmt.Errorf("rollbook_watch_failing_seconds %v", v)
		}
		return nil
	})
	if v := scrapeValue(t, url, "rollbook_watch_synced", nil); v != 0 {
		t.Errorf("rollbook_watch_synced %v with every watch forbidden", v)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the watches to sync") {
		t.Errorf("/readyz with every watch forbidden: %d %s", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with every watch forbidden: %d %s (a restart would not help)", code, body)
	}

	grantRollbook(t, c, ns)
	cluster.Eventually(t, 2*time.Minute, "ready once RBAC allows the watches", func() error {
		if code, body := get("/readyz"); code != http.StatusOK || body != "ok: leading" {
			return fmt.Errorf("readyz: %d %s", code, body)
		}
		return nil
	})
	for name, want := range map[string]float64{"rollbook_watch_synced": 1, "rollbook_watch_failing_seconds": 0} {
		if v := scrapeValue(t, url, name, nil); v != want {
			t.Errorf("%s is %v once the watches run, want %v", name, v, want)
		}
	}
}
