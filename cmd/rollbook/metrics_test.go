package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/deploy"
	"rollbook.dev/rollbook/test/cluster"
)

// scrapeMetrics GETs url/metrics and parses it as Prometheus does.
func scrapeMetrics(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(resp.Body)
}

// metricValue returns the value of the series of family name whose labels
// include labels: a gauge's or counter's value, a summary's or histogram's
// count. The sum over several matching series; false when none matches.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	var found bool
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Summary != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, found
}

// scrapeValue scrapes url and returns one value; absent fails the test.
func scrapeValue(t *testing.T, url, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := scrapeMetrics(url)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := metricValue(fams, name, labels)
	if !ok {
		t.Fatalf("/metrics has no %s%v", name, labels)
	}
	return v
}

// seriesNames lists the names a query can select in a scrape: a
// histogram's _bucket, _sum and _count, a summary's _sum and _count.
func seriesNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, f := range fams {
		names[name] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	return names
}

// TestMetricsOfARollout runs `rollbook run` (its own process, embedded
// NATS, leader election) through a real rollout of four pods and reads its
// /metrics as Prometheus would: during the rollout the per-rollout gauges
// stay within the rollout's size; after it they agree with the pods the
// apiserver shows updated, the outbox has published everything the journal
// committed, and the pipeline's histograms have observations. Then every
// query of the Grafana dashboard and of the alerting rules must name only
// series this scrape holds.
func TestMetricsOfARollout(t *testing.T) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	p := spawnRun(t, c, filepath.Join(t.TempDir(), "a"), "--namespaces", ns, "--leader-elect", "--leader-elect-namespace", ns)
	cluster.Eventually(t, time.Minute, "leading", func() error {
		if s := p.readyz(); s != "200 ok: leading" {
			return fmt.Errorf("readyz: %s\n%s", s, cluster.Tail(p.log, 10))
		}
		return nil
	})
	if code, body, err := p.get("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("healthz: %d %s %v", code, body, err)
	}
	const replicas = 4
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(ctx, kwokStatefulSet("web", stsOpts{replicas: replicas, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", replicas, time.Minute)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	createRollout(t, c, ns, "web", workloadRollout("web", map[string]any{"maxUnavailable": 2}))

	rollout := map[string]string{"namespace": ns, "rollout": "web"}
	// During the rollout: scrape until the apiserver shows it Succeeded.
	scrapes := 0
	cluster.Eventually(t, 2*time.Minute, "rollout Succeeded, watched through /metrics", func() error {
		fams, err := scrapeMetrics(p.metrics)
		if err != nil {
			return err
		}
		scrapes++
		if v, ok := metricValue(fams, "rollbook_rollout_replicas", rollout); ok {
			if u, _ := metricValue(fams, "rollbook_rollout_updated_pods", rollout); u < 0 || u > v {
				t.Errorf("rollbook_rollout_updated_pods %v of rollbook_rollout_replicas %v", u, v)
			}
		}
		st, err := rolloutStatus(c, ns, "web")
		if err != nil {
			return err
		}
		if st.Phase != "Succeeded" {
			return fmt.Errorf("phase %q", st.Phase)
		}
		return nil
	})
	updatedByAPI := 0
	for _, pod := range podsByName(t, c, ns) {
		if pod.Spec.Containers[0].Image == "registry.example/app:v2" {
			updatedByAPI++
		}
	}
	if updatedByAPI != replicas {
		t.Fatalf("%d pods run v2, want %d", updatedByAPI, replicas)
	}

	// After it: the metrics read the controller's folded view, which sees
	// the Succeeded status it wrote once the watch brings it back.
	var fams map[string]*dto.MetricFamily
	cluster.Eventually(t, 30*time.Second, "/metrics agrees with the apiserver", func() error {
		var err error
		if fams, err = scrapeMetrics(p.metrics); err != nil {
			return err
		}
		for _, w := range []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"rollbook_leader", nil, 1},
			{"rollbook_rollout_phase", map[string]string{"namespace": ns, "rollout": "web", "phase": "Succeeded"}, 1},
			{"rollbook_rollout_phase", map[string]string{"namespace": ns, "rollout": "web", "phase": "Progressing"}, 0},
			{"rollbook_rollout_replicas", rollout, replicas},
			{"rollbook_rollout_updated_pods", rollout, float64(updatedByAPI)},
			{"rollbook_rollout_updated_ready_pods", rollout, float64(updatedByAPI)},
			{"rollbook_rollout_unavailable_pods", rollout, 0},
			{"rollbook_rollout_failed_pods", rollout, 0},
			{"rollbook_rollouts", map[string]string{"phase": "Succeeded"}, 1},
			{"rollbook_pods", map[string]string{"state": "gated"}, 0},
			{"rollbook_api_writes_total", map[string]string{"verb": "patch", "resource": "pods"}, replicas},
			{"rollbook_action_failures_total", map[string]string{"kind": "patch", "class": "invalid"}, 0},
			{"rollbook_journal_healthy", nil, 1},
			{"rollbook_watch_synced", nil, 1},
			// The pods' watch is past everything on record: ingest
			// remembers none of them (ingest.Options.Reload).
			{"rollbook_ingest_known_objects", map[string]string{"resource": "pods"}, 0},
			{"rollbook_watch_failing_seconds", nil, 0},
			{"rollbook_outbox_lag_records", nil, 0},
		} {
			if v, ok := metricValue(fams, w.name, w.labels); !ok || v != w.want {
				return fmt.Errorf("%s%v is %v (present: %v), want %v", w.name, w.labels, v, ok, w.want)
			}
		}
		// Every record the journal committed is in the stream.
		committed, _ := metricValue(fams, "rollbook_journal_records_total", nil)
		if published, _ := metricValue(fams, "rollbook_outbox_published_sequence", nil); published != committed || committed == 0 {
			return fmt.Errorf("outbox published %v of %v records", published, committed)
		}
		// One plan timed per plan counted (both move together, so an idle
		// controller shows them equal).
		plans, _ := metricValue(fams, "rollbook_plans_total", nil)
		if timed, _ := metricValue(fams, "rollbook_plan_duration_seconds", nil); timed != plans || plans == 0 {
			return fmt.Errorf("%v plans timed, %v counted", timed, plans)
		}
		return nil
	})
	lag := fams["rollbook_ingest_lag_seconds"].GetMetric()[0].GetHistogram()
	records, _ := metricValue(fams, "rollbook_ingest_records_total", nil)
	if lag.GetSampleCount() == 0 || lag.GetSampleSum() <= 0 || float64(lag.GetSampleCount()) > records {
		t.Errorf("ingest lag: %d events, %vs in all, for %v records ingested", lag.GetSampleCount(), lag.GetSampleSum(), records)
	}
	// Every record takes at least its 64 bytes of hashes on disk.
	committed, _ := metricValue(fams, "rollbook_journal_records_total", nil)
	if disk, _ := metricValue(fams, "rollbook_journal_disk_bytes", nil); disk < 64*committed {
		t.Errorf("rollbook_journal_disk_bytes %v for %v records", disk, committed)
	}
	for _, name := range []string{"rollbook_journal_commits_total", "process_resident_memory_bytes", "go_goroutines"} {
		if v, ok := metricValue(fams, name, nil); !ok || v <= 0 {
			t.Errorf("%s is %v (present: %v)", name, v, ok)
		}
	}
	t.Logf("%d scrapes during the rollout; %d metric families", scrapes, len(fams))

	t.Run("dashboard and alerts", func(t *testing.T) { checkQueries(t, fams) })
}

// checkQueries: every query of the Grafana dashboard and of the alerting
// rules selects only series that the scrape fams holds, so none is a
// typo or a metric that was renamed away.
func checkQueries(t *testing.T, fams map[string]*dto.MetricFamily) {
	have := seriesNames(fams)
	qs, err := deploy.MonitoringQueries()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, q := range qs {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(q.Expr)
		if err != nil {
			t.Errorf("%s: %q: %v", q.Where, q.Expr, err)
			continue
		}
		var names []string
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				names = append(names, vs.Name)
			}
			return nil
		})
		if len(names) == 0 {
			t.Errorf("%s: %q selects no metric by name", q.Where, q.Expr)
		}
		for _, n := range names {
			used[n] = true
			if !have[n] {
				t.Errorf("%s: %q selects %s, which the controller does not export", q.Where, q.Expr, n)
			}
		}
	}
	// The other way round, as a report: rollbook metrics nobody looks at.
	var unused []string
	for name := range fams {
		if strings.HasPrefix(name, "rollbook_") && !used[name] && !used[name+"_bucket"] && !used[name+"_count"] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	t.Logf("%d queries; rollbook metrics neither charted nor alerted on: %v", len(qs), unused)
}
