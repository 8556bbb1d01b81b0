package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rollbook.dev/rollbook/journal"
	"rollbook.dev/rollbook/test/cluster"
	"rollbook.dev/rollbook/tracing"
)

// analysisRollout is a 4-pod rollout whose first step (one pod) must pass
// a Prometheus query on the service's error ratio before the rest go.
func analysisRollout(sts, prom string, extra map[string]any) map[string]any {
	strategy := map[string]any{
		"maxUnavailable": 1,
		"steps": []any{
			map[string]any{"percent": 25, "analysis": map[string]any{"checks": []any{map[string]any{
				"name":             "error-ratio",
				"prometheus":       map[string]any{"address": prom, "query": "app_error_ratio"},
				"successCondition": "result < 0.05",
				"intervalSeconds":  interval(extra),
				"passes":           2,
			}}}},
			map[string]any{"percent": 100},
		},
	}
	for k, v := range extra {
		if k != "intervalSeconds" {
			strategy[k] = v
		}
	}
	return workloadRollout(sts, strategy)
}

// interval is the check's intervalSeconds: extra's, or 1.
func interval(extra map[string]any) any {
	if v, ok := extra["intervalSeconds"]; ok {
		return v
	}
	return 1
}

// startAnalysisScene: a 4-pod StatefulSet, a service metric Prometheus
// scrapes, the controller, and the template moved to v2.
func startAnalysisScene(t *testing.T, errorRatio float64) (*cluster.Cluster, string, *running, *cluster.Prometheus) {
	c := cluster.Shared(t)
	ns := c.Namespace(t)
	target := newMetricTarget(t)
	target.set("app_error_ratio", errorRatio)
	prom := startPrometheus(t, target)
	prom.WaitSample(t, "app_error_ratio")
	r := startController(t, c, t.TempDir(), ns)
	if _, err := c.Clientset().AppsV1().StatefulSets(ns).Create(context.Background(), kwokStatefulSet("web", stsOpts{replicas: 4, gate: true}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSTSReady(t, c, ns, "web", 4, 2*time.Minute)
	setImage(t, c, ns, "web", "app", "registry.example/app:v2")
	return c, ns, r, prom
}

// TestAnalysisGatesTheNextStep: the first step's pod is updated, then the
// step's Prometheus query is measured against a real Prometheus until it
// passes twice; only then do the other pods go, and the rollout
// succeeds. The journal holds every measurement (query, value, verdict);
// replay, with Prometheus stopped, derives the same decisions.
func TestAnalysisGatesTheNextStep(t *testing.T) {
	c, ns, r, prom := startAnalysisScene(t, 0.01)
	if _, err := plugin(); err != nil { // built before the rollout starts
		t.Fatal(err)
	}
	createRollout(t, c, ns, "web-v2", analysisRollout("web", prom.Address, map[string]any{"intervalSeconds": 2}))
	// The operator's view: kubectl rollbook status waits to the end and
	// shows the analysis while it runs.
	code, out, _ := kubectlRollbook(t, writeKubeconfig(t, c, c.Config().BearerToken, ns), "status", "web-v2", "--timeout", "3m")
	if code != 0 || !strings.Contains(out, "analysis of step 0: error-ratio Running: ") || !strings.Contains(out, "successfully rolled out") {
		t.Fatalf("kubectl rollbook status: exit %d, want 0 with the running analysis shown:\n%s", code, out)
	}
	st := waitPhase(t, c, ns, "web-v2", "Succeeded", 3*time.Minute)
	if st.Analysis == nil || st.Analysis.Phase != "Passed" || st.Analysis.Checks[0].Passes < 2 {
		t.Fatalf("status.analysis %+v: want the step's check passed twice", st.Analysis)
	}
	if cond := condition(st, "Analysis"); cond == nil || cond.Status != "True" || !strings.Contains(cond.Message, `met "result < 0.05"; last value 0.01`) {
		t.Fatalf("Analysis condition %+v", cond)
	}
	for name, p := range podsByName(t, c, ns) {
		if got := p.Spec.Containers[0].Image; got != "registry.example/app:v2" {
			t.Errorf("%s runs %s after the rollout", name, got)
		}
	}
	r.waitSeen(t, ns+"/web-v2", "Succeeded")
	prom.Stop()
	r.stop(t) // replays the journal: Prometheus is not there to ask

	ms := measurements(t, r.dir)
	if len(ms) < 2 {
		t.Fatalf("journal holds %d measurements, want at least 2", len(ms))
	}
	for _, m := range ms {
		if m.Check != "error-ratio" || m.Provider != "prometheus" || m.Query != "app_error_ratio" || m.Condition != "result < 0.05" || m.Value != "0.01" || m.Verdict != journal.VerdictPass {
			t.Errorf("measurement %+v: want the query, its value 0.01 and the verdict Pass", m)
		}
	}
	// The step held the other pods until the analysis passed: the first
	// gate of a second pod comes after the second passing measurement.
	au := readAudit(t, r.dir)
	if len(au.firstGated) != 4 {
		t.Fatalf("pods gated %v, want all 4", au.firstGated)
	}
	assertAfterAnalysis(t, r.dir, au.firstGated[1])
}

// TestAnalysisFailureRollsBack: the first step's query fails (error ratio
// 0.5), the rollout rolls that step's pod back in place (onFailure
// Rollback) and ends RolledBack with a Failed condition naming the check
// and its value; no pod beyond the first step is touched. Replay with
// Prometheus stopped derives the same rollback.
func TestAnalysisFailureRollsBack(t *testing.T) {
	c, ns, r, prom := startAnalysisScene(t, 0.5)
	createRollout(t, c, ns, "web-v2", analysisRollout("web", prom.Address, map[string]any{"onFailure": "Rollback"}))
	st := waitPhase(t, c, ns, "web-v2", "RolledBack", 3*time.Minute)
	cond := condition(st, "Failed")
	if cond == nil || cond.Status != "True" || cond.Reason != "AnalysisFailed" || !strings.Contains(cond.Message, `error-ratio: 1 measurements did not meet "result < 0.05" (failure limit 0); last value 0.5`) {
		t.Fatalf("Failed condition %+v: want AnalysisFailed naming the check and its value", cond)
	}
	cluster.Eventually(t, 30*time.Second, "a Warning Event AnalysisFailed", func() error {
		evs, err := c.Clientset().CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.kind=InPlaceRollout,involvedObject.name=web-v2"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Type == "Warning" && e.Reason == "AnalysisFailed" && strings.Contains(e.Message, "last value 0.5") {
				return nil
			}
		}
		return fmt.Errorf("no AnalysisFailed event among %d", len(evs.Items))
	})
	for name, p := range podsByName(t, c, ns) {
		if got := p.Spec.Containers[0].Image; got != "registry.example/app:v1" {
			t.Errorf("%s runs %s after the rollback", name, got)
		}
	}
	r.waitSeen(t, ns+"/web-v2", "RolledBack")
	prom.Stop()
	r.stop(t)

	if ms := measurements(t, r.dir); len(ms) != 1 || ms[0].Verdict != journal.VerdictFail || ms[0].Value != "0.5" {
		t.Fatalf("measurements %+v: want exactly one, Fail, value 0.5", ms)
	}
	au := readAudit(t, r.dir)
	touched := 0
	for pod, kinds := range au.actions {
		switch {
		case kinds["patch"] == 2 && kinds["gate"] == 2:
			touched++ // the step's pod: forward, then back
		case kinds["patch"] != 0 || kinds["gate"] != 0:
			t.Errorf("pod %s: writes %v; only the first step's pod may be touched", pod, kinds)
		}
	}
	if touched != 1 {
		t.Errorf("%d pods updated and rolled back, want 1 (25%% of 4): %v", touched, au.actions)
	}

	// The trace shows the measurement as a span with its evidence, and
	// the report lists it; both from the journal alone.
	src := recordSource{dir: filepath.Join(r.dir, "journal")}
	spans, err := tracing.Build(context.Background(), func(ctx context.Context, from uint64, fn func(journal.Record) error) error {
		return src.read(ctx, fn)
	}, ns+"/web-v2")
	if err != nil {
		t.Fatal(err)
	}
	var measured bool
	for _, s := range spans {
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
		}
		if s.Name() == "measure" && attrs[tracing.AttrVerdict] == journal.VerdictFail && attrs[tracing.AttrValue] == "0.5" && attrs[tracing.AttrQuery] == "app_error_ratio" {
			measured = true
		}
	}
	if !measured {
		t.Errorf("no measure span with the query, value 0.5 and verdict Fail among %d spans", len(spans))
	}
	out := filepath.Join(t.TempDir(), "report.html")
	if err := reportCmd(context.Background(), []string{"--dir", filepath.Join(r.dir, "journal"), "-o", out, "--rollout", ns + "/web-v2"}); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Analysis (1 measurements)", "app_error_ratio", "result &lt; 0.05", ">Fail<"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the report does not show %q", want)
		}
	}
}

// assertAfterAnalysis checks that pod's first gate was journaled after the
// analysis's last passing measurement.
func assertAfterAnalysis(t *testing.T, dir, pod string) {
	t.Helper()
	var lastPass, gate uint64
	eachOutcome(t, dir, func(seq uint64, f journal.ActionFact) {
		switch {
		case f.Measurement != nil && f.Measurement.Verdict == journal.VerdictPass:
			lastPass = seq
		case f.Kind == "gate" && strings.HasSuffix(f.Pod, "/"+pod) && gate == 0:
			gate = seq
		}
	})
	if gate == 0 || gate < lastPass {
		t.Fatalf("%s gated at record %d, before the analysis passed at %d", pod, gate, lastPass)
	}
}
