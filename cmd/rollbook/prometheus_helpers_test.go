package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
)

// metricTarget is a service's /metrics whose values the test sets: what
// a real Prometheus scrapes and an analysis queries.
type metricTarget struct {
	srv    *httptest.Server
	mu     sync.Mutex
	values map[string]float64
}

func newMetricTarget(t *testing.T) *metricTarget {
	m := &metricTarget{values: map[string]float64{}}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for name, v := range m.values {
			fmt.Fprintf(w, "# TYPE %s gauge\n%s %s\n", name, name, strconv.FormatFloat(v, 'g', -1, 64))
		}
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *metricTarget) set(name string, v float64) {
	m.mu.Lock()
	m.values[name] = v
	m.mu.Unlock()
}

// startPrometheus runs a real Prometheus (test/cluster) scraping target
// every second.
func startPrometheus(t *testing.T, target *metricTarget) *cluster.Prometheus {
	t.Helper()
	u, _ := url.Parse(target.srv.URL)
	return cluster.StartPrometheus(t, u.Host)
}

// eachOutcome calls fn with every ActionSucceeded fact of a test's
// journal, in order.
func eachOutcome(t *testing.T, dir string, fn func(seq uint64, f journal.ActionFact)) {
	t.Helper()
	src := recordSource{dir: filepath.Join(dir, "journal")}
	err := src.read(context.Background(), func(r journal.Record) error {
		if r.Kind != journal.KindActionSucceeded {
			return nil
		}
		var f journal.ActionFact
		if err := r.Decode(&f); err != nil {
			return err
		}
		fn(r.Seq, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// measurements are the analysis measurements a journal holds, in order.
func measurements(t *testing.T, dir string) []journal.Measurement {
	t.Helper()
	var out []journal.Measurement
	eachOutcome(t, dir, func(_ uint64, f journal.ActionFact) {
		if f.Measurement != nil {
			out = append(out, *f.Measurement)
		}
	})
	return out
}
