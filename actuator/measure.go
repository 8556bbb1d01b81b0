package actuator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"k8s.io/client-go/util/jsonpath"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/planner"
	"rollbook.dev/rollbook/projections"
)

// maxResponse bounds what a measurement reads of a response: a check
// selects a value, it does not download a page.
const maxResponse = 1 << 20

// measure takes one measurement of a Measure action's check. It never
// fails: no value is a measurement too (verdict Error, counted against
// the check's error limit), and a check that cannot be evaluated at all is
// one with verdict Invalid. The journal gets the value the check selected,
// never a response body.
func (a *Actuator) measure(ctx context.Context, act planner.Action) *journal.Measurement {
	c := act.Check
	m := &journal.Measurement{Step: act.Step, Verdict: journal.VerdictError}
	if c == nil {
		m.Verdict, m.Error = journal.VerdictInvalid, "the measure action names no check"
		return m
	}
	m.Check, m.Condition = c.Name, c.SuccessCondition
	method := http.MethodGet
	switch {
	case c.Prometheus != nil:
		m.Provider, m.Query = "prometheus", c.Prometheus.Query
	case c.Web != nil:
		if c.Web.Method != "" {
			method = c.Web.Method
		}
		m.Provider, m.Query = "web", method+" "+c.Web.URL
	default:
		m.Verdict, m.Error = journal.VerdictInvalid, "the check names neither prometheus nor web"
		return m
	}
	prg, err := conditions.compile(c.SuccessCondition)
	if err != nil {
		m.Verdict, m.Error = journal.VerdictInvalid, err.Error()
		return m
	}
	var value any
	if c.Prometheus != nil {
		value, err = a.queryPrometheus(ctx, c.Prometheus)
	} else {
		value, err = a.fetchWeb(ctx, method, c.Web)
	}
	if errors.Is(err, errEgress) {
		m.Verdict, m.Error = journal.VerdictInvalid, err.Error()
		return m
	}
	if err != nil {
		m.Error = err.Error()
		return m
	}
	raw, _ := json.Marshal(value) // decoded from JSON: always encodes
	m.Value = string(raw)
	out, _, err := prg.ContextEval(ctx, map[string]any{"result": value})
	if err != nil {
		m.Error = "successCondition: " + err.Error()
		return m
	}
	pass, ok := out.Value().(bool)
	if !ok {
		m.Verdict, m.Error = journal.VerdictInvalid, fmt.Sprintf("successCondition %q gives %s, not a bool", c.SuccessCondition, out.Type())
		return m
	}
	m.Verdict = journal.VerdictFail
	if pass {
		m.Verdict = journal.VerdictPass
	}
	return m
}

// queryPrometheus runs an instant query: the value is a number for a
// scalar or a vector of one series, a list of numbers for several series.
func (a *Actuator) queryPrometheus(ctx context.Context, p *projections.PrometheusCheck) (any, error) {
	u, err := url.Parse(strings.TrimSuffix(p.Address, "/") + "/api/v1/query")
	if err != nil {
		return nil, fmt.Errorf("prometheus address: %w", err)
	}
	u.RawQuery = url.Values{"query": {p.Query}}.Encode()
	body, err := a.get(ctx, http.MethodGet, u.String(), "", 10*time.Second)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("prometheus: not a query response: %w", err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", resp.Error)
	}
	switch resp.Data.ResultType {
	case "scalar":
		var sample [2]any
		if err := json.Unmarshal(resp.Data.Result, &sample); err != nil {
			return nil, fmt.Errorf("prometheus: scalar: %w", err)
		}
		return sampleValue(sample[1])
	case "vector":
		var series []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(resp.Data.Result, &series); err != nil {
			return nil, fmt.Errorf("prometheus: vector: %w", err)
		}
		if len(series) == 0 {
			return nil, errors.New("prometheus: the query returned no data")
		}
		values := make([]any, len(series))
		for i, s := range series {
			if values[i], err = sampleValue(s.Value[1]); err != nil {
				return nil, err
			}
		}
		if len(values) == 1 {
			return values[0], nil
		}
		return values, nil
	}
	return nil, fmt.Errorf("prometheus: result type %q: the query must give a scalar or an instant vector", resp.Data.ResultType)
}

// sampleValue is a sample's value, which Prometheus sends as a string.
func sampleValue(v any) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("prometheus: sample value %v is not a string", v)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("prometheus: sample value %q: %w", s, err)
	}
	return f, nil
}

// fetchWeb makes the web check's request; the value is the JSON response,
// or the part of it the check's JSONPath selects.
func (a *Actuator) fetchWeb(ctx context.Context, method string, w *projections.WebCheck) (any, error) {
	timeout := 10 * time.Second
	if w.TimeoutSeconds != nil && *w.TimeoutSeconds > 0 {
		timeout = time.Duration(*w.TimeoutSeconds) * time.Second
	}
	body, err := a.get(ctx, method, w.URL, w.Body, timeout)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("web: the response is not JSON: %w", err)
	}
	if w.JSONPath == "" {
		return doc, nil
	}
	jp := jsonpath.New("check")
	if err := jp.Parse(w.JSONPath); err != nil {
		return nil, fmt.Errorf("web: jsonPath %q: %w", w.JSONPath, err)
	}
	results, err := jp.FindResults(doc)
	if err != nil {
		return nil, fmt.Errorf("web: jsonPath %q: %w", w.JSONPath, err)
	}
	if len(results) == 0 || len(results[0]) == 0 {
		return nil, fmt.Errorf("web: jsonPath %q selects nothing", w.JSONPath)
	}
	return results[0][0].Interface(), nil
}

// get makes one request and returns the body of a 2xx response.
func (a *Actuator) get(ctx context.Context, method, target, body string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	if err := allowedHost(a.opts.AnalysisHosts, req.URL); err != nil {
		return nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: HTTP %d", method, target, resp.StatusCode)
	}
	return data, nil
}

// conditions compiles each success condition once.
var conditions = &conditionCache{programs: map[string]cel.Program{}}

type conditionCache struct {
	mu       sync.Mutex
	env      *cel.Env
	programs map[string]cel.Program
}

func (c *conditionCache) compile(expr string) (cel.Program, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.programs[expr]; ok {
		return p, nil
	}
	if c.env == nil {
		env, err := cel.NewEnv(cel.Variable("result", cel.DynType), cel.CrossTypeNumericComparisons(true))
		if err != nil {
			return nil, fmt.Errorf("successCondition: %w", err)
		}
		c.env = env
	}
	ast, iss := c.env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("successCondition %q does not compile: %w", expr, iss.Err())
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("successCondition %q gives %s, not a bool", expr, t)
	}
	p, err := c.env.Program(ast)
	if err != nil {
		return nil, fmt.Errorf("successCondition %q: %w", expr, err)
	}
	c.programs[expr] = p
	return p, nil
}
