package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"

	"rollbook.dev/rollbook/test/cluster"
)

// What the apiserver's API Priority and Fairness (APF) did, seen from the
// server: the FlowSchema and PriorityLevel a client's requests land in
// (the response headers every request gets), and the flowcontrol metrics
// of /metrics between two scrapes.

// pfRecorder is a client transport that counts its responses by status
// code and by the FlowSchema and PriorityLevel UIDs APF put in their
// headers. Every attempt counts: a 429 client-go retried is one 429 here.
type pfRecorder struct {
	next http.RoundTripper

	mu      sync.Mutex
	codes   map[int]int64
	classes map[pfClass]int64 // by UID
}

// pfClass is where APF put a request: FlowSchema and PriorityLevel, by UID
// in a recorder, by name once resolved.
type pfClass struct{ FlowSchema, PriorityLevel string }

func (c pfClass) String() string { return c.FlowSchema + " → " + c.PriorityLevel }

// recordPF makes cfg's clients record their responses in a new recorder.
func recordPF(cfg *rest.Config) *pfRecorder {
	r := &pfRecorder{codes: map[int]int64{}, classes: map[pfClass]int64{}}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { r.next = rt; return r }
	return r
}

func (r *pfRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	c := pfClass{
		FlowSchema:    resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID),
		PriorityLevel: resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedPriorityLevelConfigurationUID),
	}
	r.mu.Lock()
	r.codes[resp.StatusCode]++
	r.classes[c]++
	r.mu.Unlock()
	return resp, nil
}

// snapshot returns the counts so far.
func (r *pfRecorder) snapshot() (codes map[int]int64, classes map[pfClass]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	codes, classes = map[int]int64{}, map[pfClass]int64{}
	for k, v := range r.codes {
		codes[k] = v
	}
	for k, v := range r.classes {
		classes[k] = v
	}
	return codes, classes
}

// pfNames maps the apiserver's FlowSchema and PriorityLevelConfiguration
// UIDs to their names.
func pfNames(ctx context.Context, cs kubernetes.Interface) (map[string]string, error) {
	out := map[string]string{"": "(none)"}
	fss, err := cs.FlowcontrolV1().FlowSchemas().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing FlowSchemas: %w", err)
	}
	for _, fs := range fss.Items {
		out[string(fs.UID)] = fs.Name
	}
	pls, err := cs.FlowcontrolV1().PriorityLevelConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing PriorityLevelConfigurations: %w", err)
	}
	for _, pl := range pls.Items {
		out[string(pl.UID)] = pl.Name
	}
	return out, nil
}

// named resolves a recorder's classes to names.
func named(classes map[pfClass]int64, names map[string]string) map[pfClass]int64 {
	out := map[pfClass]int64{}
	for c, n := range classes {
		out[pfClass{names[c.FlowSchema], names[c.PriorityLevel]}] += n
	}
	return out
}

// classOf makes one request as cfg's user (a list of one pod of ns) and
// returns where APF put it, by name.
func classOf(ctx context.Context, cfg *rest.Config, ns string, names map[string]string) (pfClass, error) {
	cfg = rest.CopyConfig(cfg)
	rec := recordPF(cfg)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return pfClass{}, err
	}
	if _, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return pfClass{}, err
	}
	_, classes := rec.snapshot()
	for c := range named(classes, names) {
		return c, nil
	}
	return pfClass{}, fmt.Errorf("no response recorded")
}

// apiserverMetrics scrapes the apiserver's /metrics as the admin.
func apiserverMetrics(ctx context.Context, c *cluster.Cluster) (scraped, error) {
	hc, err := rest.HTTPClientFor(c.Config())
	if err != nil {
		return scraped{}, err
	}
	text, err := scrape(ctx, hc, c.Server+"/metrics")
	if err != nil {
		return scraped{}, err
	}
	return parseMetrics(text), nil
}

// apfRow is one FlowSchema and PriorityLevel's requests between two
// scrapes of the apiserver's metrics.
type apfRow struct {
	Class      pfClass
	Dispatched float64
	Rejected   map[string]float64 // by reason: queue-full, concurrency-limit, time-out, cancelled
	// The wait in APF's queues of requests that then executed: count, sum
	// (seconds), and cumulative bucket counts by upper bound.
	WaitCount, WaitSum float64
	waitBuckets        map[float64]float64
}

func (r *apfRow) rejected() float64 {
	var n float64
	for _, v := range r.Rejected {
		n += v
	}
	return n
}

func (r *apfRow) waitMean() float64 {
	if r.WaitCount == 0 {
		return 0
	}
	return r.WaitSum / r.WaitCount
}

// waitQuantile is the upper bound of the bucket that holds quantile q of
// the waits (+Inf past the last bound).
func (r *apfRow) waitQuantile(q float64) float64 {
	if r.WaitCount == 0 {
		return 0
	}
	les := make([]float64, 0, len(r.waitBuckets))
	for le := range r.waitBuckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	for _, le := range les {
		if r.waitBuckets[le] >= q*r.WaitCount {
			return le
		}
	}
	return math.Inf(1)
}

// apfDiff returns the flowcontrol figures of every FlowSchema and
// PriorityLevel that dispatched or rejected a request between m0 and m1,
// busiest first.
func apfDiff(m0, m1 scraped) []*apfRow {
	rows := map[pfClass]*apfRow{}
	row := func(l map[string]string) *apfRow {
		c := pfClass{l["flow_schema"], l["priority_level"]}
		r := rows[c]
		if r == nil {
			r = &apfRow{Class: c, Rejected: map[string]float64{}, waitBuckets: map[float64]float64{}}
			rows[c] = r
		}
		return r
	}
	for key, v1 := range m1.values {
		name, l := splitSample(key)
		d := v1 - m0.values[key]
		if d == 0 {
			continue
		}
		switch name {
		case "apiserver_flowcontrol_dispatched_requests_total":
			row(l).Dispatched += d
		case "apiserver_flowcontrol_rejected_requests_total":
			row(l).Rejected[l["reason"]] += d
		case "apiserver_flowcontrol_request_wait_duration_seconds_count":
			if l["execute"] == "true" {
				row(l).WaitCount += d
			}
		case "apiserver_flowcontrol_request_wait_duration_seconds_sum":
			if l["execute"] == "true" {
				row(l).WaitSum += d
			}
		case "apiserver_flowcontrol_request_wait_duration_seconds_bucket":
			if l["execute"] == "true" {
				le, err := strconv.ParseFloat(l["le"], 64)
				if err == nil {
					row(l).waitBuckets[le] += d
				}
			}
		}
	}
	out := make([]*apfRow, 0, len(rows))
	for _, r := range rows {
		if r.Dispatched > 0 || r.rejected() > 0 {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Dispatched != out[j].Dispatched {
			return out[i].Dispatched > out[j].Dispatched
		}
		return out[i].Class.String() < out[j].Class.String()
	})
	return out
}

// seatsByLevel is a per-PriorityLevel gauge's value in m ("nominal_limit_seats",
// "current_limit_seats").
func seatsByLevel(m scraped, gauge string) map[string]float64 {
	out := map[string]float64{}
	for key, v := range m.values {
		name, l := splitSample(key)
		if name == "apiserver_flowcontrol_"+gauge {
			out[l["priority_level"]] = v
		}
	}
	return out
}

// splitSample splits `name{a="x",b="y"}` into the name and its labels.
func splitSample(key string) (string, map[string]string) {
	name, rest, ok := strings.Cut(key, "{")
	if !ok {
		return key, nil
	}
	l := map[string]string{}
	rest = strings.TrimSuffix(rest, "}")
	for rest != "" {
		k, after, ok := strings.Cut(rest, `="`)
		if !ok {
			break
		}
		// Label values here hold no escaped quotes.
		v, after, _ := strings.Cut(after, `"`)
		l[k] = v
		rest = strings.TrimPrefix(after, ",")
	}
	return name, l
}
