package actuator

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rollbook.dev/rollbook/planner"
)

// kinds is the closed set of action kinds, in a fixed order for the
// per-kind counters.
var kinds = []planner.ActionKind{
	planner.Gate, planner.Ungate, planner.Patch, planner.Resize,
	planner.Recreate, planner.Status, planner.Event,
}

// Latency is the sum and count of the API calls of one action kind: the
// write, including client-side rate limiting and client-go's retries; the
// journal appends around it are the journal's metrics.
type Latency struct {
	Count int64
	Sum   time.Duration
}

// Stats is a snapshot of the actuator's counters, for /metrics.
type Stats struct {
	// Requests counts HTTP requests sent, by "<verb> <resource>" (verb in
	// lower case, resource with its subresource: "patch pods/status",
	// "delete pods", "create events", "patch inplacerollouts/status").
	// client-go's own retries count, each. Any "get" or "list" here breaks
	// the zero-reads invariant.
	Requests map[string]int64
	// Outcomes counts Do outcomes by "<kind> <class>", class "succeeded"
	// or a journal.Class* value.
	Outcomes map[string]int64
	// Latency of the API write per action kind.
	Latency map[string]Latency
}

type kindCounters struct {
	count    atomic.Int64
	sumNanos atomic.Int64
}

type metrics struct {
	byKind map[planner.ActionKind]*kindCounters // fixed keys: read without a lock

	mu       sync.Mutex
	requests map[string]int64
	outcomes map[string]int64
}

func newMetrics() *metrics {
	m := &metrics{byKind: map[planner.ActionKind]*kindCounters{}, requests: map[string]int64{}, outcomes: map[string]int64{}}
	for _, k := range kinds {
		m.byKind[k] = &kindCounters{}
	}
	return m
}

func (m *metrics) observe(kind planner.ActionKind, d time.Duration, err error) {
	if c, ok := m.byKind[kind]; ok {
		c.count.Add(1)
		c.sumNanos.Add(int64(d))
	}
	outcome := "succeeded"
	if err != nil {
		outcome = Classify(err)
	}
	m.mu.Lock()
	m.outcomes[string(kind)+" "+outcome]++
	m.mu.Unlock()
}

func (m *metrics) request(key string) {
	m.mu.Lock()
	m.requests[key]++
	m.mu.Unlock()
}

// wrap is a rest.Config transport wrapper counting requests by verb and
// resource.
func (m *metrics) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		m.request(requestKey(req))
		return rt.RoundTrip(req)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// requestKey names a request as "<verb> <resource>[/<subresource>]" from
// its method and path (/api/v1/namespaces/ns/pods/name/status,
// /apis/group/version/namespaces/ns/resource/name).
func requestKey(req *http.Request) string {
	verb := strings.ToLower(req.Method)
	switch req.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	// Skip the API prefix: "api/v1" or "apis/<group>/<version>".
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return verb + " " + req.URL.Path
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) > 2 {
		parts = parts[2:]
	}
	if len(parts) == 0 {
		return verb + " " + req.URL.Path
	}
	res := parts[0]
	if len(parts) >= 3 {
		res += "/" + parts[2]
	}
	if req.Method == http.MethodGet && len(parts) == 1 {
		verb = "list"
	}
	return verb + " " + res
}

// Stats returns a snapshot of the counters.
func (a *Actuator) Stats() Stats {
	s := Stats{Requests: map[string]int64{}, Outcomes: map[string]int64{}, Latency: map[string]Latency{}}
	for _, k := range kinds {
		c := a.m.byKind[k]
		s.Latency[string(k)] = Latency{Count: c.count.Load(), Sum: time.Duration(c.sumNanos.Load())}
	}
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	for k, v := range a.m.requests {
		s.Requests[k] = v
	}
	for k, v := range a.m.outcomes {
		s.Outcomes[k] = v
	}
	return s
}

// Writes returns the requests sent by "<verb> <resource>"; see
// Stats.Requests. By the zero-reads invariant every one is a write.
func (a *Actuator) Writes() map[string]int64 { return a.Stats().Requests }
