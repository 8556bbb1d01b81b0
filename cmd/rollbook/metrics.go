package main

import (
	"context"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/actuator"
	"rollbook.dev/rollbook/ctl"
	"rollbook.dev/rollbook/ingest"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/projections"
)

func metaName(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

// metricsServer serves /metrics, /healthz and /readyz for one process
// (health.go says what the probes mean). The zero value is ready to use.
//
// Its metrics live in a registry of their own, not client_golang's global
// one: the Go runtime and process collectors, plan durations, and a
// collector that reads the leading controller's state at scrape time, so
// nothing is counted twice and a standby exports no rollout state.
type metricsServer struct {
	once sync.Once
	reg  *prometheus.Registry

	mu      sync.Mutex
	c       *controller
	leadCtx context.Context // ends when leadership (or the process) ends
	standby bool
	leader  string // the Lease's holder, as the election last saw it
	stopped bool   // led, and the controller has returned
	journal journalWatch
}

// lead makes c the controller the metrics and probes read, for as long as
// ctx (its leadership) lasts; set(nil) once c.run has returned.
func (m *metricsServer) lead(ctx context.Context, c *controller) {
	m.mu.Lock()
	m.c, m.leadCtx = c, ctx
	m.mu.Unlock()
}

func (m *metricsServer) set(c *controller) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c == nil && m.c != nil {
		m.stopped = true
	}
	m.c, m.leadCtx = c, nil
}

func (m *metricsServer) setStandby(b bool) { m.mu.Lock(); m.standby = b; m.mu.Unlock() }

// current returns the controller being led, nil when none.
func (m *metricsServer) current() *controller {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c
}

func (m *metricsServer) registry() *prometheus.Registry {
	m.once.Do(func() {
		m.reg = prometheus.NewRegistry()
		m.reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			planSeconds,
			(*controllerCollector)(m),
		)
	})
	return m.reg
}

func (m *metricsServer) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", m.healthz)
	mux.HandleFunc("/readyz", m.readyz)
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc(ctl.JournalPath, m.journalAPI)
	return mux
}

// servePprof adds Go's profiling endpoints to mux (rollbook run --pprof):
// a CPU profile of a controller under load is how its cycle is measured
// (BENCHMARKS.md, the controller's profile).
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// planSeconds times planner.Plan in planLoop. One per process: a process
// leads at most once (losing the Lease ends it).
var planSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
	Name:    "rollbook_plan_duration_seconds",
	Help:    "Time to compute one plan (planner.Incremental over the folded state and what changed since the last plan).",
	Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
})

// The metrics the controller collector exports. Names before the 2026-12
// move to client_golang are kept as they were.
var (
	descLeader = prometheus.NewDesc("rollbook_leader",
		"1 when this process leads.", nil, nil)
	descRollouts = prometheus.NewDesc("rollbook_rollouts",
		"Rollouts by phase.", []string{"phase"}, nil)
	descPods = prometheus.NewDesc("rollbook_pods",
		"Pods tracked, and those gated (the rollbook readiness condition False).", []string{"state"}, nil)
	descJournalSeq = prometheus.NewDesc("rollbook_journal_sequence",
		"Last journal sequence folded into the controller's state.", nil, nil)
	descPlans = prometheus.NewDesc("rollbook_plans_total",
		"Plans computed.", nil, nil)
	descFullPlans = prometheus.NewDesc("rollbook_full_plans_total",
		"Plans that planned every rollout and pod (the first, after a node change, and every 5 minutes of journal time); the others replanned only what the records since the last plan changed.", nil, nil)
	descWrites = prometheus.NewDesc("rollbook_api_writes_total",
		"API requests sent by the actuator, by verb and resource (every one a write).", []string{"verb", "resource"}, nil)
	descActionSeconds = prometheus.NewDesc("rollbook_action_seconds",
		"Latency of the API write of each action, by kind (with client-side rate limiting and retries).", []string{"kind"}, nil)

	descFailures = prometheus.NewDesc("rollbook_action_failures_total",
		"Actions that failed, by kind and failure class (the class of their ActionFailed record).", []string{"kind", "class"}, nil)

	rolloutLabels = []string{"namespace", "rollout"}
	descPhase     = prometheus.NewDesc("rollbook_rollout_phase",
		"1 for the rollout's current phase, 0 for the others.", append(rolloutLabels, "phase"), nil)
	descReplicas = prometheus.NewDesc("rollbook_rollout_replicas",
		"Pods the rollout targets.", rolloutLabels, nil)
	descUpdated = prometheus.NewDesc("rollbook_rollout_updated_pods",
		"Pods of the rollout at its target revision.", rolloutLabels, nil)
	descUpdatedReady = prometheus.NewDesc("rollbook_rollout_updated_ready_pods",
		"Pods of the rollout at its target revision and ready.", rolloutLabels, nil)
	descUnavailable = prometheus.NewDesc("rollbook_rollout_unavailable_pods",
		"Pods of the rollout gated or not ready.", rolloutLabels, nil)
	descFailedPods = prometheus.NewDesc("rollbook_rollout_failed_pods",
		"Pods of the rollout whose update failed.", rolloutLabels, nil)
	descStep = prometheus.NewDesc("rollbook_rollout_current_step",
		"Index of the rollout's current step.", rolloutLabels, nil)

	descIngestLag = prometheus.NewDesc("rollbook_ingest_lag_seconds",
		"Time from a watch event's arrival to the commit of its journal record.", nil, nil)
	descIngestRecords = prometheus.NewDesc("rollbook_ingest_records_total",
		"Records ingest appended to the journal.", nil, nil)
	descIngestKnown = prometheus.NewDesc("rollbook_ingest_known_objects",
		"Objects ingest remembers (UID and resourceVersion) to tell duplicates from new events; 0 for a resource whose watch has passed everything on record, until it lists again.", []string{"resource"}, nil)
	descWatchSynced = prometheus.NewDesc("rollbook_watch_synced",
		"1 once every watched resource has had a complete view.", nil, nil)
	descWatchFailing = prometheus.NewDesc("rollbook_watch_failing_seconds",
		"How long the longest-failing watch has been failing; 0 when all are connected.", nil, nil)

	descJournalRecords = prometheus.NewDesc("rollbook_journal_records_total",
		"Records committed to the journal, over its whole life (its last sequence).", nil, nil)
	descJournalBatches = prometheus.NewDesc("rollbook_journal_commits_total",
		"Synced journal batches committed by this process.", nil, nil)
	descJournalBytes = prometheus.NewDesc("rollbook_journal_disk_bytes",
		"Disk space the journal's store takes.", nil, nil)
	descJournalHealthy = prometheus.NewDesc("rollbook_journal_healthy",
		"1 while the journal is open and its commits return; 0 when closed or a commit is stuck or failed.", nil, nil)
	descOutboxPublished = prometheus.NewDesc("rollbook_outbox_published_sequence",
		"Last journal sequence the NATS stream is known to hold (absent with --no-nats).", nil, nil)
	descOutboxLag = prometheus.NewDesc("rollbook_outbox_lag_records",
		"Records committed to the journal and not yet acknowledged by the NATS stream (absent with --no-nats).", nil, nil)
	descStreamCheckpoint = prometheus.NewDesc("rollbook_stream_checkpoint_sequence",
		"Journal sequence of the newest checkpoint this process found in, or copied to, the object store beside the NATS stream, from which a new standby and replay of the stream start once the stream's limits removed its first records; 0 until the first copy (absent with --no-nats).", nil, nil)
)

// failureClasses are the classes of ActionFailed records; every (kind,
// class) pair is exported from the start, at 0, so rate() and alerts see a
// failure's first occurrence. NB: the counters are the actuator's, so
// "abandoned" counts writes cut short by this process's shutdown, not the
// intents of a dead process journaled at start-up.
var failureClasses = []string{
	journal.ClassConflict, journal.ClassGone, journal.ClassInvalid, journal.ClassThrottled,
	journal.ClassBlocked, journal.ClassAbandoned, journal.ClassOther,
}

var rolloutPhases = []string{
	projections.PhasePending, projections.PhaseProgressing, projections.PhasePaused,
	projections.PhaseSucceeded, projections.PhaseFailed, projections.PhaseRolledBack,
}

// controllerCollector exports the leading controller's state as read at
// scrape time: the folded projections, the actuator's, ingester's and
// journal's counters. A standby exports rollbook_leader 0 and nothing else.
type controllerCollector metricsServer

func (cc *controllerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descLeader, descRollouts, descPods, descJournalSeq, descPlans, descFullPlans, descWrites, descActionSeconds,
		descFailures, descPhase, descReplicas, descUpdated, descUpdatedReady, descUnavailable, descFailedPods, descStep,
		descIngestLag, descIngestRecords, descIngestKnown, descWatchSynced, descWatchFailing,
		descJournalRecords, descJournalBatches, descJournalBytes, descJournalHealthy, descOutboxPublished, descOutboxLag, descStreamCheckpoint,
	} {
		ch <- d
	}
}

func (cc *controllerCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*metricsServer)(cc)
	e := emitter{ch}
	c := m.current()
	if c == nil {
		e.gauge(descLeader, 0)
		return
	}
	e.gauge(descLeader, 1)
	now := time.Now()
	collectState(e, c)
	collectActuator(e, c.act.Stats())
	collectIngest(e, c.in, now)
	js := c.j.Stats()
	e.counter(descJournalRecords, float64(js.Committed))
	e.counter(descJournalBatches, float64(js.Batches))
	e.gauge(descJournalBytes, float64(js.DiskBytes))
	e.gauge(descJournalHealthy, b2f(m.journal.check(js, now) == ""))
	if c.ob != nil {
		p := c.ob.Published()
		e.gauge(descOutboxPublished, float64(p))
		e.gauge(descOutboxLag, float64(js.Committed-min(p, js.Committed)))
		e.gauge(descStreamCheckpoint, float64(c.ob.Shipped()))
	}
}

// emitter sends constant metrics, made at scrape time, to a collection.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e.ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// collectState exports the folded state: rollouts (each, and by phase),
// pods, the sequence folded, plans made.
func collectState(e emitter, c *controller) {
	rollouts, pods, gated, seq := c.snapshot()
	phases := map[string]int{}
	for key, st := range rollouts {
		phases[st.Phase]++
		ns, name, _ := strings.Cut(key, "/")
		for _, ph := range rolloutPhases {
			e.gauge(descPhase, b2f(st.Phase == ph), ns, name, ph)
		}
		e.gauge(descReplicas, float64(st.Replicas), ns, name)
		e.gauge(descUpdated, float64(st.Updated), ns, name)
		e.gauge(descUpdatedReady, float64(st.UpdatedReady), ns, name)
		e.gauge(descUnavailable, float64(st.Unavailable), ns, name)
		e.gauge(descFailedPods, float64(st.Failed), ns, name)
		e.gauge(descStep, float64(st.CurrentStep), ns, name)
	}
	for _, ph := range sortedKeys(phases) {
		e.gauge(descRollouts, float64(phases[ph]), ph)
	}
	e.gauge(descPods, float64(pods), "tracked")
	e.gauge(descPods, float64(gated), "gated")
	e.gauge(descJournalSeq, float64(seq))
	e.counter(descPlans, float64(c.plans.Load()))
	e.counter(descFullPlans, float64(c.fullPlans.Load()))
}

// collectActuator exports the actuator's requests, latencies and failures.
func collectActuator(e emitter, st actuator.Stats) {
	for k, n := range st.Requests {
		verb, res, _ := strings.Cut(k, " ")
		e.counter(descWrites, float64(n), verb, res)
	}
	for kind, l := range st.Latency { // every action kind
		e.ch <- prometheus.MustNewConstSummary(descActionSeconds, uint64(l.Count), l.Sum.Seconds(), nil, kind)
		for _, class := range failureClasses {
			e.counter(descFailures, float64(st.Outcomes[kind+" "+class]), kind, class)
		}
	}
}

// collectIngest exports ingest's lag, records and watch health.
func collectIngest(e emitter, in *ingest.Ingester, now time.Time) {
	lag := in.Lag()
	buckets := make(map[float64]uint64, len(lag.Buckets))
	for i, b := range ingest.LagBuckets {
		buckets[b] = lag.Buckets[i]
	}
	e.ch <- prometheus.MustNewConstHistogram(descIngestLag, lag.Count, lag.Sum.Seconds(), buckets)
	e.counter(descIngestRecords, float64(in.Stats.Records.Load()))
	for res, n := range in.Held() {
		e.gauge(descIngestKnown, float64(n), res)
	}
	h := in.Health()
	e.gauge(descWatchSynced, b2f(h.Synced))
	failing := 0.0
	if !h.FailingSince.IsZero() {
		failing = now.Sub(h.FailingSince).Seconds()
	}
	e.gauge(descWatchFailing, failing)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
