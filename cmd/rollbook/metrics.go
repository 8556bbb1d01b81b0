package main

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func metaName(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

// metricsServer serves /metrics (Prometheus text format), /healthz and
// /readyz. Ready means: leading with a synced view, or standing by.
type metricsServer struct {
	mu      sync.Mutex
	c       *controller
	standby bool
}

func (m *metricsServer) set(c *controller) { m.mu.Lock(); m.c = c; m.mu.Unlock() }
func (m *metricsServer) setStandby(b bool) { m.mu.Lock(); m.standby = b; m.mu.Unlock() }

func (m *metricsServer) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		c, standby := m.c, m.standby
		m.mu.Unlock()
		switch {
		case standby:
			fmt.Fprintln(w, "ok: standing by")
		case c != nil && c.started.Load() && c.plans.Load() > 0:
			fmt.Fprintln(w, "ok: leading")
		default:
			http.Error(w, "not ready: starting", http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/metrics", m.metrics)
	return mux
}

func (m *metricsServer) metrics(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	c := m.c
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	var b strings.Builder
	leader := 0
	if c != nil {
		leader = 1
	}
	fmt.Fprintf(&b, "# HELP rollbook_leader 1 when this process leads.\n# TYPE rollbook_leader gauge\nrollbook_leader %d\n", leader)
	if c == nil {
		w.Write([]byte(b.String()))
		return
	}
	rollouts, pods, gated, seq := c.snapshot()
	phases := map[string]int{}
	for _, st := range rollouts {
		phases[st.Phase]++
	}
	fmt.Fprintf(&b, "# HELP rollbook_rollouts Rollouts by phase.\n# TYPE rollbook_rollouts gauge\n")
	for _, ph := range sortedKeys(phases) {
		fmt.Fprintf(&b, "rollbook_rollouts{phase=%q} %d\n", ph, phases[ph])
	}
	fmt.Fprintf(&b, "# HELP rollbook_pods Pods by state.\n# TYPE rollbook_pods gauge\nrollbook_pods{state=\"tracked\"} %d\nrollbook_pods{state=\"gated\"} %d\n", pods, gated)
	fmt.Fprintf(&b, "# HELP rollbook_journal_sequence Last journal sequence folded.\n# TYPE rollbook_journal_sequence gauge\nrollbook_journal_sequence %d\n", seq)
	fmt.Fprintf(&b, "# HELP rollbook_plans_total Plans computed.\n# TYPE rollbook_plans_total counter\nrollbook_plans_total %d\n", c.plans.Load())
	st := c.act.Stats()
	fmt.Fprintf(&b, "# HELP rollbook_api_writes_total API writes by verb and resource.\n# TYPE rollbook_api_writes_total counter\n")
	for _, k := range sortedKeys(st.Requests) {
		verb, res, _ := strings.Cut(k, " ")
		fmt.Fprintf(&b, "rollbook_api_writes_total{verb=%q,resource=%q} %d\n", verb, res, st.Requests[k])
	}
	fmt.Fprintf(&b, "# HELP rollbook_action_seconds Action latency.\n# TYPE rollbook_action_seconds summary\n")
	for _, k := range sortedKeys(st.Latency) {
		l := st.Latency[k]
		fmt.Fprintf(&b, "rollbook_action_seconds_sum{kind=%q} %g\nrollbook_action_seconds_count{kind=%q} %d\n", k, l.Sum.Seconds(), k, l.Count)
	}
	w.Write([]byte(b.String()))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
