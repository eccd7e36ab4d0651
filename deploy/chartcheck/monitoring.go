package chartcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// MonitoringDir is the monitoring component, the one home of the alerts and dashboard.
func MonitoringDir() string { return filepath.Join(DeployDir(), "components", "monitoring") }

// Rules reads the PrometheusRule, strictly (a misspelt field is an error).
func Rules() (*monitoringv1.PrometheusRule, error) {
	data, err := os.ReadFile(filepath.Join(MonitoringDir(), "prometheusrule.yaml"))
	if err != nil {
		return nil, err
	}
	var rule monitoringv1.PrometheusRule
	if err := yaml.UnmarshalStrict(data, &rule); err != nil {
		return nil, fmt.Errorf("prometheusrule.yaml is not a PrometheusRule: %w", err)
	}
	return &rule, nil
}

// Panel is a dashboard panel with its queries.
type Panel struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Type        string `json:"type"`
	Targets     []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

// DashboardPanels reads the Grafana dashboard's panels.
func DashboardPanels() ([]Panel, error) {
	data, err := os.ReadFile(filepath.Join(MonitoringDir(), "dashboard.json"))
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []Panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("dashboard.json: %w", err)
	}
	return d.Panels, nil
}

// Expressions returns every PromQL expression of the rules and the dashboard, keyed by
// where it is (alert name or panel title).
func Expressions() (map[string][]string, error) {
	rule, err := Rules()
	if err != nil {
		return nil, err
	}
	panels, err := DashboardPanels()
	if err != nil {
		return nil, err
	}
	exprs := map[string][]string{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			where := "alert " + r.Alert + r.Record
			exprs[where] = append(exprs[where], r.Expr.String())
		}
	}
	for _, p := range panels {
		for _, t := range p.Targets {
			exprs["panel "+p.Title] = append(exprs["panel "+p.Title], t.Expr)
		}
	}
	return exprs, nil
}

// MetricNames parses expr with Prometheus' PromQL parser and returns the metric names
// it selects, sorted.
func MetricNames(expr string) ([]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" && !slices.Contains(names, vs.Name) {
			names = append(names, vs.Name)
		}
		return nil
	})
	slices.Sort(names)
	return names, nil
}
