package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
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
	hs := httptest.NewServer(srv.mux())
	defer hs.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	cluster.Eventually(t, time.Minute, "leading and ready", func() error {
		if code, body := get("/readyz"); code != 200 || body != "ok: leading" {
			return fmt.Errorf("readyz: %d %s", code, body)
		}
		if code, body := get("/healthz"); code != 200 {
			return fmt.Errorf("healthz: %d %s", code, body)
		}
		return nil
	})
	if v := scrapeValue(t, hs.URL, "rollbook_journal_healthy", nil); v != 1 {
		t.Fatalf("rollbook_journal_healthy is %v while the journal works", v)
	}

	r.c.j.Close()
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusServiceUnavailable || !strings.Contains(body, "journal closed") {
			t.Errorf("%s with the journal closed: %d %s", path, code, body)
		}
	}
	if v := scrapeValue(t, hs.URL, "rollbook_journal_healthy", nil); v != 0 {
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
