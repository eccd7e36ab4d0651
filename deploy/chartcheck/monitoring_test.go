package chartcheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestPromQL(t *testing.T) {
	t.Run("every rule and dashboard query parses and selects a metric", testQueriesParse)
}

func testQueriesParse(t *testing.T) {
	exprs, err := Expressions()
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 10 {
		t.Fatalf("found %d alerts and panels, want the whole set", len(exprs))
	}
	for where, list := range exprs {
		for _, e := range list {
			if names, err := MetricNames(e); err != nil {
				t.Errorf("%s: %v\n%s", where, err, e)
			} else if len(names) == 0 {
				t.Errorf("%s selects no metric: %s", where, e)
			}
		}
	}
}

func TestAlertAnnotations(t *testing.T) {
	t.Run("every alert has a severity and a runbook", testSeverityAndRunbook)
}

func testSeverityAndRunbook(t *testing.T) {
	rule, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical (pages) or warning", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s has no %s annotation", r.Alert, a)
				}
			}
		}
	}
}

// promtool builds Prometheus' promtool from this module's pinned version, without the
// service-discovery plugins it does not need for rule files.
func promtool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "promtool")
	cmd := exec.Command("go", "build", "-tags", "remove_all_sd", "-o", bin, "github.com/prometheus/prometheus/cmd/promtool")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building promtool: %v\n%s", err, out)
	}
	return bin
}

// The alerts fire when they should and only then.
func TestAlertRules(t *testing.T) {
	rule, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	bin := promtool(t)
	dir := t.TempDir()
	write := func(name string, spec monitoringv1.PrometheusRuleSpec) string {
		t.Helper()
		data, err := yaml.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	full := write("full.yaml", rule.Spec)
	t.Run("promtool check rules accepts the rules and their annotation templates", func(t *testing.T) {
		if out, err := exec.Command(bin, "check", "rules", full).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
	})
	t.Run("promtool test rules passes testdata/alerts-test.yaml", func(t *testing.T) {
		bare := rule.Spec.DeepCopy()
		for i := range bare.Groups {
			for j := range bare.Groups[i].Rules {
				bare.Groups[i].Rules[j].Annotations = nil
			}
		}
		write("rules.yaml", *bare)
		test, err := os.ReadFile(filepath.Join("testdata", "alerts-test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "alerts-test.yaml"), test, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "test", "rules", filepath.Join(dir, "alerts-test.yaml")).CombinedOutput(); err != nil {
			t.Errorf("promtool test rules: %v\n%s", err, out)
		}
	})
	t.Run("every alert has a test that fires it", func(t *testing.T) {
		test, err := os.ReadFile(filepath.Join("testdata", "alerts-test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var tests struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `json:"alertname"`
					ExpAlerts []any  `json:"exp_alerts"`
				} `json:"alert_rule_test"`
			} `json:"tests"`
		}
		if err := yaml.Unmarshal(test, &tests); err != nil {
			t.Fatal(err)
		}
		fired := map[string]bool{}
		for _, tc := range tests.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fired[a.Alertname] = true
				}
			}
		}
		for _, g := range rule.Spec.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" && !fired[r.Alert] {
					t.Errorf("no test in testdata/alerts-test.yaml expects %s to fire", r.Alert)
				}
			}
		}
	})
}

// strict decodes obj into out, failing on any field out's type does not have.
func strict(t *testing.T, obj *unstructured.Unstructured, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, out, true); err != nil {
		t.Errorf("%s does not decode as its type (misspelt or misplaced field?): %v", key(obj), err)
	}
}

func TestComponentTypes(t *testing.T) {
	t.Run("the monitoring and network-policy objects decode as their types", testComponentTypes)
}

func testComponentTypes(t *testing.T) {
	objs := kustomize(t, "overlays/self-signed", "monitoring", "network-policy", "metrics-secure")
	seen := map[string]bool{}
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceMonitor":
			var sm monitoringv1.ServiceMonitor
			strict(t, o, &sm)
			if sm.Spec.Endpoints[0].TLSConfig == nil || sm.Spec.Endpoints[0].Scheme == nil {
				t.Errorf("with metrics-secure the ServiceMonitor must scrape HTTPS with the CA: %+v", sm.Spec.Endpoints[0])
			}
		case "PrometheusRule":
			strict(t, o, &monitoringv1.PrometheusRule{})
		case "NetworkPolicy":
			var np networkingv1.NetworkPolicy
			strict(t, o, &np)
		default:
			continue
		}
		seen[o.GetKind()] = true
	}
	for _, k := range []string{"ServiceMonitor", "PrometheusRule", "NetworkPolicy"} {
		if !seen[k] {
			t.Errorf("the components render no %s", k)
		}
	}
}
