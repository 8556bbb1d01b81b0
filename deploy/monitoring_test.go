package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"rollbook.dev/rollbook/test/cluster"
)

// TestChartDashboardIsCopy: the chart cannot read outside its directory,
// so it carries a copy of grafana/rollbook.json; it must not drift.
func TestChartDashboardIsCopy(t *testing.T) {
	b, err := os.ReadFile("chart/files/rollbook-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, GrafanaDashboard) {
		t.Fatal("chart/files/rollbook-dashboard.json differs from grafana/rollbook.json: cp deploy/grafana/rollbook.json deploy/chart/files/rollbook-dashboard.json")
	}
}

// TestHelmChartMonitoring renders the chart with its ServiceMonitor,
// PrometheusRule and dashboard ConfigMap on (they are off by default), and
// checks each as its consumer would: the ServiceMonitor and PrometheusRule
// decode strictly as the Prometheus Operator's types, select the chart's
// Service and metrics port, and hold rules Prometheus parses; the
// ConfigMap passes the apiserver's dry run and holds the dashboard JSON
// under Grafana's sidecar label. (That the expressions name only metrics
// the controller exports is cmd/rollbook's TestMetricsOfARollout.)
func TestHelmChartMonitoring(t *testing.T) {
	helm, err := cluster.Helm(context.Background(), os.Stderr)
	if err != nil {
		t.Fatalf("building helm: %v", err)
	}
	render := func(args ...string) []*unstructured.Unstructured {
		t.Helper()
		args = append([]string{"template", "rb", "chart", "--namespace", systemNamespace, "--kube-version", cluster.KubernetesVersion}, args...)
		out, err := exec.Command(helm, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		objs, err := Decode(out)
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
	for _, o := range render() {
		if k := o.GetKind(); k == "ServiceMonitor" || k == "PrometheusRule" || k == "ConfigMap" {
			t.Errorf("the default chart renders a %s; monitoring objects are opt-in", k)
		}
	}

	objs := render("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prom",
		"--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
		"--set", "metrics.grafanaDashboard.namespace=monitoring")
	byKind := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		byKind[o.GetKind()] = o
	}
	var sm monitoringv1.ServiceMonitor
	strictDecode(t, byKind["ServiceMonitor"], &sm)
	svc := byKind["Service"]
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.GetLabels()[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s; the Service has %v", k, v, svc.GetLabels())
		}
	}
	if sm.Labels["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v lack metrics.serviceMonitor.labels", sm.Labels)
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	if len(sm.Spec.Endpoints) != 1 || len(ports) != 1 || sm.Spec.Endpoints[0].Port != ports[0].(map[string]any)["name"] {
		t.Errorf("ServiceMonitor endpoints %+v do not name the Service's port %v", sm.Spec.Endpoints, ports)
	}
	if got := sm.Spec.NamespaceSelector.MatchNames; len(got) != 1 || got[0] != systemNamespace {
		t.Errorf("ServiceMonitor looks in namespaces %v", got)
	}

	var pr monitoringv1.PrometheusRule
	strictDecode(t, byKind["PrometheusRule"], &pr)
	var file monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(AlertRules, &file); err != nil {
		t.Fatalf("chart/files/alerts.yaml: %v", err)
	}
	if !reflect.DeepEqual(file, pr.Spec) {
		t.Errorf("the PrometheusRule's spec is not chart/files/alerts.yaml")
	}
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if _, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr.String()); err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
			}
			if r.For != nil {
				if _, err := model.ParseDuration(string(*r.For)); err != nil {
					t.Errorf("alert %s: for: %v", r.Alert, err)
				}
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s needs a severity and a summary", r.Alert)
			}
		}
	}
	for _, want := range []string{"RollbookRolloutFailed", "RollbookRolloutStalled", "RollbookActionFailuresRising", "RollbookOutboxLagGrowing", "RollbookJournalFailing"} {
		if !strings.Contains(strings.Join(alerts, " "), want) {
			t.Errorf("the PrometheusRule has no %s (has %v)", want, alerts)
		}
	}
	// The rule file's own text survives Helm: annotations keep Prometheus's
	// templates.
	if s := pr.Spec.Groups[0].Rules[0].Annotations["summary"]; !strings.Contains(s, "{{ $labels.rollout }}") {
		t.Errorf("annotation templated away by Helm: %q", s)
	}

	cm := byKind["ConfigMap"]
	if cm.GetLabels()["grafana_dashboard"] != "1" || cm.GetNamespace() != "monitoring" {
		t.Errorf("dashboard ConfigMap %s/%s labels %v", cm.GetNamespace(), cm.GetName(), cm.GetLabels())
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "rollbook.json")
	if !json.Valid([]byte(data)) || strings.TrimSpace(data) != strings.TrimSpace(string(GrafanaDashboard)) {
		t.Errorf("the ConfigMap's rollbook.json is not grafana/rollbook.json")
	}
	c := cluster.Shared(t)
	ctx := context.Background()
	ns := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"monitoring"}}`
	if _, err := Apply(ctx, c.Config(), []byte(ns), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cm.Object)
	if _, err := Apply(ctx, c.Config(), b, ApplyOptions{DryRun: true}); err != nil {
		t.Errorf("dashboard ConfigMap refused: %v", err)
	}
}

// strictDecode decodes o into v, failing on any field v does not have: a
// misspelt field would be dropped silently by the operator's CRD schema.
func strictDecode(t *testing.T, o *unstructured.Unstructured, v any) {
	t.Helper()
	if o == nil {
		t.Fatalf("not rendered: %T", v)
	}
	b, err := yaml.Marshal(o.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

// TestGrafanaDashboard: the dashboard is JSON Grafana imports (a uid, a
// data source variable every panel uses), and every query of it and of the
// alerting rules parses as PromQL once Grafana's variables are replaced.
func TestGrafanaDashboard(t *testing.T) {
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title      string                  `json:"title"`
			Type       string                  `json:"type"`
			Datasource struct{ UID string }    `json:"datasource"`
			Targets    []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(GrafanaDashboard, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || len(d.Templating.List) == 0 || d.Templating.List[0].Type != "datasource" {
		t.Fatalf("dashboard uid %q, variables %+v", d.UID, d.Templating.List)
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: data source %q, %d targets", p.Title, p.Datasource.UID, len(p.Targets))
		}
	}
	qs, err := MonitoringQueries()
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) < 20 {
		t.Fatalf("only %d queries found", len(qs))
	}
	for _, q := range qs {
		if _, err := parser.NewParser(parser.Options{}).ParseExpr(q.Expr); err != nil {
			t.Errorf("%s: %q: %v", q.Where, q.Expr, err)
		}
	}
}
