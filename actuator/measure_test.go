package actuator_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"rollbook.dev/rollbook/actuator"
	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// TestMeasure takes measurements from real HTTP servers speaking the
// Prometheus query API and plain JSON, and checks what the journal gets:
// the query, the value the check selected, the verdict, and no request
// to the apiserver. The end-to-end test against a real Prometheus is
// TestAnalysisGatesTheNextStep.
func TestMeasure(t *testing.T) {
	e := newEnv(t)
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Query().Get("query") {
		case "one":
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1.5,"0.01"]}]}}`))
		case "two":
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"1"]},{"metric":{},"value":[1.5,"3"]}]}}`))
		case "none":
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
		case "scalar(1)":
			w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1.5,"1"]}}`))
		default:
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
		}
	}))
	defer prom.Close()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			w.Write([]byte(`{"status":"ok","checks":{"db":{"latencyMs":12}},"secret":"not-journaled"}`))
		case "/redirect":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.Write([]byte(`not json`))
		}
	}))
	defer web.Close()

	promCheck := func(query, cond string) *projections.AnalysisCheck {
		return &projections.AnalysisCheck{Name: "c", Prometheus: &projections.PrometheusCheck{Address: prom.URL, Query: query}, SuccessCondition: cond}
	}
	webCheck := func(path, jsonPath, cond string) *projections.AnalysisCheck {
		return &projections.AnalysisCheck{Name: "c", Web: &projections.WebCheck{URL: web.URL + path, JSONPath: jsonPath}, SuccessCondition: cond}
	}
	for _, tc := range []struct {
		name                  string
		check                 *projections.AnalysisCheck
		verdict, value, error string
	}{
		{"one series passes", promCheck("one", "result < 0.05"), journal.VerdictPass, "0.01", ""},
		{"one series fails", promCheck("one", "result < 0.001"), journal.VerdictFail, "0.01", ""},
		{"int literal against a double", promCheck("scalar(1)", "result >= 1"), journal.VerdictPass, "1", ""},
		{"several series are a list", promCheck("two", "result.all(x, x < 5)"), journal.VerdictPass, "[1,3]", ""},
		{"no data is no value", promCheck("none", "result < 1"), journal.VerdictError, "", "no data"},
		{"a bad query is no value", promCheck("bad(", "result < 1"), journal.VerdictError, "", "HTTP 400"},
		{"a condition that does not compile", promCheck("one", "result <"), journal.VerdictInvalid, "", "does not compile"},
		{"a condition that is not a bool", promCheck("one", "string(result)"), journal.VerdictInvalid, "", "not a bool"},
		{"web jsonPath string", webCheck("/health", "{.status}", `result == "ok"`), journal.VerdictPass, `"ok"`, ""},
		{"web jsonPath number", webCheck("/health", "{.checks.db.latencyMs}", "result < 10"), journal.VerdictFail, "12", ""},
		{"web non-2xx", webCheck("/down", "", "true"), journal.VerdictError, "", "HTTP 503"},
		{"web not JSON", webCheck("/text", "", "true"), journal.VerdictError, "", "not JSON"},
		{"web path selects nothing", webCheck("/health", "{.nope}", "true"), journal.VerdictError, "", "nope"},
		// Instance metadata lives on link-local addresses; a rollout's
		// author could read what a check selects there in the status.
		{"link-local is refused", &projections.AnalysisCheck{Name: "c", Web: &projections.WebCheck{URL: "http://169.254.169.254/latest/meta-data/"}, SuccessCondition: "true"}, journal.VerdictInvalid, "", "link-local address 169.254.169.254"},
		{"a redirect to link-local is refused", webCheck("/redirect", "", "true"), journal.VerdictInvalid, "", "link-local address 169.254.169.254"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.reqs.all())
			act := planner.Action{Kind: planner.Measure, Rollout: e.ns + "/r1", RolloutUID: "u1", Revision: "rev1", Step: 0, Check: tc.check, N: 1}
			fact := e.do(act, "")
			m := fact.Measurement
			if m == nil {
				t.Fatalf("outcome has no measurement: %+v", fact)
			}
			if m.Verdict != tc.verdict || m.Value != tc.value || !strings.Contains(m.Error, tc.error) {
				t.Fatalf("measurement %+v, want verdict %s value %q error containing %q", m, tc.verdict, tc.value, tc.error)
			}
			if m.Check != "c" || m.Condition != tc.check.SuccessCondition || m.Query == "" {
				t.Fatalf("measurement does not say what it measured: %+v", m)
			}
			if strings.Contains(m.Value, "not-journaled") {
				t.Fatalf("the journal got more than the selected value: %q", m.Value)
			}
			if n := len(e.reqs.all()) - before; n != 0 {
				t.Fatalf("a measurement made %d apiserver requests", n)
			}
		})
	}

	// With an allow-list, a host not on it is never asked.
	listed, err := actuator.New(actuator.Options{Config: e.c.Config(), Journal: e.j, AnalysisHosts: []string{"prometheus.monitoring:9090"}})
	if err != nil {
		t.Fatal(err)
	}
	fact, err := listed.Do(context.Background(), planner.Action{Kind: planner.Measure, Rollout: e.ns + "/r1", RolloutUID: "u1", Revision: "rev1", Check: promCheck("one", "true"), N: 2}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if m := fact.Measurement; m == nil || m.Verdict != journal.VerdictInvalid || !strings.Contains(m.Error, "is not allowed (--analysis-allowed-hosts [prometheus.monitoring:9090])") {
		t.Fatalf("measurement of an unlisted host: %+v", fact.Measurement)
	}
}
