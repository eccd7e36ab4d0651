package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// monitoringMetrics lists the metric names the alerts and the dashboard query
// (deploy/chartcheck/cmd/monitoring-metrics: Prometheus' PromQL parser on every
// expression).
func monitoringMetrics(ctx context.Context, t *testing.T) []string {
	t.Helper()
	bin, err := cluster.MonitoringMetrics.Path()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = filepath.Join(cluster.RepoRoot(), "deploy", "chartcheck")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("monitoring-metrics: %v\n%s", err, stderr.String())
	}
	return strings.Fields(string(out))
}

// seriesNames returns the metric name of every sample in a Prometheus text exposition.
func seriesNames(exposition string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// fromOtherExporters are metric name prefixes the rules use from Prometheus itself
// (up), kube-state-metrics (kube_) and the API server (apiserver_): not serve's.
var fromOtherExporters = []string{"up", "kube_", "apiserver_"}

// policyModeOnly says whether serve registers the metric only with --admission=policy
// (webhook/policysync): TestPolicySync checks those the rules use against a serve in
// that mode, TestMonitoringMetrics the others.
func policyModeOnly(name string) bool { return strings.HasPrefix(name, "sysctl_placement_policy_") }

// Every metric the alerts and the dashboard name must be one a running serve exports:
// a renamed metric would otherwise leave an alert that can never fire.
// sysctl_placement_build_info and sysctl_placement_pool_nodes are required too.
func TestMonitoringMetrics(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
		t.Fatal(err)
	}
	wh := startDiscoveryWebhook(ctx, t, c, "monitoring").Webhook
	// Admissions of every outcome, so the counters and histograms have samples: a
	// placement, a host-namespace clash resolved, a denial. Real creates: dry runs
	// are not counted.
	ns := optedInNamespace(ctx, t, c, "monitored", nil)
	pods := c.Client.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, placedPod(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a pod with kernel.shmmax was refused: %v", err)
	}
	clash := placedPod()
	clash.Spec.HostIPC = true
	if _, err := pods.Create(ctx, clash, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a hostIPC pod with kernel.shmmax was refused (want hostIPC stripped): %v", err)
	}
	denied := placedPod()
	denied.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "net.core.rmem_max", Value: "1"}}
	if _, err := pods.Create(ctx, denied, metav1.CreateOptions{}); err == nil {
		t.Fatal("a pod with net.core.rmem_max, which no pool allows, was admitted")
	}

	_, exposition, err := wh.Get(ctx, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exported := seriesNames(exposition)
	t.Run("docs/operations.md lists every metric serve exports, with its type, labels and help", func(t *testing.T) {
		checkMetricsTable(t, exposition)
	})
	t.Run("every metric the alerts and the dashboard use is exported by serve", func(t *testing.T) {
		for _, name := range monitoringMetrics(ctx, t) {
			if slices.ContainsFunc(fromOtherExporters, func(p string) bool { return name == p || (strings.HasSuffix(p, "_") && strings.HasPrefix(name, p)) }) || policyModeOnly(name) {
				continue
			}
			if !exported[name] {
				t.Errorf("the rules or the dashboard use %s, which serve does not export", name)
			}
		}
	})
}

// With --metrics-secure (the chart's metrics.secure), /metrics is HTTPS with the
// serving certificate and only identities RBAC allows read it: checked by the real
// API server's TokenReview and SubjectAccessReview against the chart's RBAC.
func TestMetricsSecure(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{APIServerFlags: map[string][]string{"enable-aggregator-routing": {"true"}}})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	// The scraper the chart's metrics.readers names by default, and another account.
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"prometheus-k8s", "someone-else"} {
		if _, err := c.Client.CoreV1().ServiceAccounts("monitoring").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, replica := installChart(ctx, t, c, "metrics.secure=true")
	secret, err := c.Client.CoreV1().Secrets(chartNamespace).Get(ctx, "sysctl-placement-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// As the ServiceMonitor scrapes: the CA from the TLS Secret, the Service's name.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(secret.Data["ca.crt"])
	scraper := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "sysctl-placement.sysctl-placement.svc", MinVersion: tls.VersionTLS12,
	}}}
	token := func(sa string) string {
		t.Helper()
		tr, err := c.Client.CoreV1().ServiceAccounts("monitoring").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	get := func(path, bearer string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, replica.metricsURL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := scraper.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		name, path, token string
		code              int
		body              string
	}{
		{"the probes stay open without a token", "/readyz", "", http.StatusOK, "ok"},
		{"/metrics without a token is refused with 401", "/metrics", "", http.StatusUnauthorized, "bearer token"},
		{"/metrics with a forged token is refused with 401", "/metrics", "not-a-token", http.StatusUnauthorized, "not accepted"},
		{"/metrics for an account without the grant is refused with 403", "/metrics", token("someone-else"), http.StatusForbidden, "system:serviceaccount:monitoring:someone-else"},
		{"/metrics for the chart's metrics reader answers the metrics", "/metrics", token("prometheus-k8s"), http.StatusOK, "sysctl_placement_certificate_expiry_timestamp_seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(tc.path, tc.token)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("GET %s = %d %.200q, want %d containing %q", tc.path, code, body, tc.code, tc.body)
			}
		})
	}
}

// The metrics table in docs/operations.md sits between these markers; it is generated
// from a running serve's registry (its HELP and TYPE and the label names of its
// samples), so it cannot go stale. SYSCTL_PLACEMENT_UPDATE_DOCS=1 rewrites it.
const (
	metricsTableBegin = "<!-- metrics table: generated by TestMonitoringMetrics in integration/e2e; SYSCTL_PLACEMENT_UPDATE_DOCS=1 rewrites it -->"
	metricsTableEnd   = "<!-- end of metrics table -->"
)

// metricsTable renders serve's own metrics (sysctl_placement_*, kubewebhook_*) as a
// Markdown table, sorted by name.
func metricsTable(t *testing.T, exposition string) string {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(exposition))
	if err != nil {
		t.Fatalf("serve's /metrics is not the Prometheus text format: %v", err)
	}
	var b strings.Builder
	b.WriteString("| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n")
	for _, name := range slices.Sorted(maps.Keys(families)) {
		if !strings.HasPrefix(name, "sysctl_placement_") && !strings.HasPrefix(name, "kubewebhook_") {
			continue
		}
		f := families[name]
		var labels []string
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(labels, l.GetName()) {
					labels = append(labels, l.GetName())
				}
			}
		}
		slices.Sort(labels)
		if len(labels) == 0 {
			labels = []string{"—"}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, strings.ToLower(f.GetType().String()),
			strings.Join(labels, ", "), strings.ReplaceAll(f.GetHelp(), "|", "\\|"))
	}
	return b.String()
}

func checkMetricsTable(t *testing.T, exposition string) {
	t.Helper()
	path := filepath.Join(cluster.RepoRoot(), "docs", "operations.md")
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(doc), metricsTableBegin)
	_, after, ok2 := strings.Cut(rest, metricsTableEnd)
	if !ok1 || !ok2 {
		t.Fatalf("docs/operations.md has no metrics table markers:\n%s\n%s", metricsTableBegin, metricsTableEnd)
	}
	want := before + metricsTableBegin + "\n" + metricsTable(t, exposition) + metricsTableEnd + after
	if want == string(doc) {
		return
	}
	if os.Getenv("SYSCTL_PLACEMENT_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the metrics table in %s", path)
		return
	}
	t.Errorf("the metrics table in docs/operations.md is stale; rerun with SYSCTL_PLACEMENT_UPDATE_DOCS=1 and commit it. It should read:\n%s", metricsTable(t, exposition))
}
