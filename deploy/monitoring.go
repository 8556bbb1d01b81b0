package deploy

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"

	"sigs.k8s.io/yaml"
)

// GrafanaDashboard is grafana/rollbook.json, the Grafana dashboard of
// Rollbook's metrics. The chart ships a copy (chart/files/) as a ConfigMap
// for Grafana's dashboard sidecar; a test keeps the two identical.
//
//go:embed grafana/rollbook.json
var GrafanaDashboard []byte

// AlertRules is chart/files/alerts.yaml: Rollbook's alerting rules as a
// Prometheus rule file (groups), also the spec of the chart's
// PrometheusRule.
//
//go:embed chart/files/alerts.yaml
var AlertRules []byte

// Query is a PromQL expression the dashboard or the alerting rules run.
type Query struct {
	Where string // "alert RollbookRolloutFailed", "panel Progress", "variable job"
	Expr  string // as Prometheus receives it: Grafana's variables replaced
}

// MonitoringQueries returns every query of GrafanaDashboard and
// AlertRules, for tests that hold them against what the controller
// exports. Grafana's variables are replaced by values of their kind
// ($__rate_interval by 5m, $job by .+), and a variable's
// label_values(metric, label) by its metric.
func MonitoringQueries() ([]Query, error) {
	var d struct {
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(GrafanaDashboard, &d); err != nil {
		return nil, fmt.Errorf("deploy: grafana/rollbook.json: %w", err)
	}
	var out []Query
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, Query{Where: "panel " + p.Title, Expr: grafanaExpr(tg.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue // the data source variable
		}
		s, _ := q["query"].(string)
		if m := labelValues.FindStringSubmatch(s); m != nil {
			out = append(out, Query{Where: "variable " + v.Name, Expr: m[1]})
		} else {
			out = append(out, Query{Where: "variable " + v.Name, Expr: grafanaExpr(s)})
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(AlertRules, &rules); err != nil {
		return nil, fmt.Errorf("deploy: chart/files/alerts.yaml: %w", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, Query{Where: "alert " + r.Alert, Expr: r.Expr})
		}
	}
	return out, nil
}

var (
	labelValues   = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	grafanaBuilt  = regexp.MustCompile(`\$__[a-z_]+`)
	grafanaCustom = regexp.MustCompile(`\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?`)
)

func grafanaExpr(s string) string {
	s = grafanaBuilt.ReplaceAllString(s, "5m")
	return grafanaCustom.ReplaceAllString(s, ".+")
}
