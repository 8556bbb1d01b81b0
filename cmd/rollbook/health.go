package main

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
)

// The probes, as the chart wires them:
//
// /healthz (liveness) fails only when the process is broken in a way that
// only a restart mends: the journal of the controller it leads with is
// closed, or a commit has not returned for journalStuckAfter (a dead
// disk). An apiserver or NATS outage never fails it: a restart would not
// help. It also fails once the controller has stopped (lead returned): the
// process is on its way out.
//
// /readyz (readiness) says whether the process does its job:
//   - standing by for the Lease: ready, as a standby is meant to wait;
//   - leading: ready once the journal is folded, every watch has synced and
//     a first plan is made; not ready while a watch has been failing for
//     watchBrokenAfter, while the journal fails, or once leadership is lost
//     (lead's context ended, the controller is stopping);
//   - neither (electing, or stopped): not ready.
const (
	journalStuckAfter = 30 * time.Second
	watchBrokenAfter  = 2 * time.Minute
)

// probe is what the probes judge, read from the process at one instant.
type probe struct {
	standby   bool
	leading   bool // a controller is set
	stopped   bool // a controller was set and has returned
	leadEnded bool // the leading controller's context has ended
	started   bool // the journal is folded
	plans     int64
	watch     ingest.Health
	journal   string // why the journal fails; "" when it does not
	diskFull  bool   // the journal waits for disk space
}

func (m *metricsServer) probe(now time.Time) probe {
	m.mu.Lock()
	c, ctx := m.c, m.leadCtx
	p := probe{standby: m.standby, stopped: m.stopped}
	m.mu.Unlock()
	if c == nil {
		return p
	}
	p.leading = true
	p.leadEnded = ctx != nil && ctx.Err() != nil
	p.started = c.started.Load()
	p.plans = c.plans.Load()
	p.watch = c.in.Health()
	st := c.j.Stats()
	p.journal = m.journal.check(st, now)
	p.diskFull = st.DiskFull
	return p
}

// live returns why the process should be restarted, "" when it should not.
func (p probe) live() string {
	switch {
	case p.journal != "":
		return p.journal
	case p.stopped:
		return "the controller has stopped"
	}
	return ""
}

// ready returns "" when ready, or why not.
func (p probe) ready(now time.Time) string {
	switch {
	case p.standby && !p.leading:
		return ""
	case p.stopped && !p.leading:
		return "the controller has stopped"
	case !p.leading:
		return "starting"
	case p.leadEnded:
		return "no longer leading (the Lease was lost or the process is stopping)"
	case p.journal != "":
		return p.journal
	case p.diskFull:
		// Not live-failing: a restart cannot free space, and the journal
		// resumes by itself when space returns.
		return "journal: disk full, nothing is written until space returns"
	case !p.started:
		return "folding the journal"
	case !p.watch.Synced:
		return "waiting for the watches to sync"
	case p.plans == 0:
		return "no plan made yet"
	case !p.watch.FailingSince.IsZero() && now.Sub(p.watch.FailingSince) >= watchBrokenAfter:
		return fmt.Sprintf("%s (for %s)", p.watch.Failing, now.Sub(p.watch.FailingSince).Round(time.Second))
	}
	return ""
}

func (m *metricsServer) healthz(w http.ResponseWriter, r *http.Request) {
	if why := m.probe(time.Now()).live(); why != "" {
		http.Error(w, "unhealthy: "+why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (m *metricsServer) readyz(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p := m.probe(now)
	if why := p.ready(now); why != "" {
		http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
		return
	}
	if p.leading {
		fmt.Fprintln(w, "ok: leading")
		return
	}
	fmt.Fprintln(w, "ok: standing by")
}

// journalWatch tells a stuck journal from a busy one: commits outstanding
// (Stats.Uncommitted > 0) while Committed has not moved since the first
// check that saw them, for journalStuckAfter. Probes and scrapes check it
// every few seconds, so a stuck commit is reported within one period of
// the threshold.
type journalWatch struct {
	mu        sync.Mutex
	committed uint64
	since     time.Time // zero when no commit is outstanding
}

// check returns why the journal fails, "" when it does not.
func (w *journalWatch) check(s journal.Stats, now time.Time) string {
	if s.Closed {
		return "journal closed"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case s.Uncommitted == 0:
		w.since = time.Time{}
	case w.since.IsZero() || s.Committed != w.committed:
		w.since = now
	case now.Sub(w.since) >= journalStuckAfter:
		return fmt.Sprintf("journal: %d records after %d not committed for %s",
			s.Uncommitted, s.Committed, now.Sub(w.since).Round(time.Second))
	}
	w.committed = s.Committed
	return ""
}
