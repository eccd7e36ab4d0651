package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

// BenchmarkPolicyDryRunCreate measures a dry-run create of a pod asking for
// kernel.shmmax and kernel.sem in an opted-in namespace, one at a time: with no
// admission, with the webhook (serve, example config), and with the rendered policies
// of the example config and of 10 and 50 synthetic pools (where render refuses as
// slower than the webhook, the refusal is logged and the policies measured anyway). Besides the time per create it reports the API
// server's own admission time per pod of each kind of policy and webhook:
//
//	go test -run '^$' -bench BenchmarkPolicyDryRunCreate -benchtime 500x ./e2e/
//
// It asserts nothing about the time; docs/design.md ("Policy backend") has the numbers.
func BenchmarkPolicyDryRunCreate(b *testing.B) {
	if _, err := cluster.SysctlPlacement.Path(); err != nil { // built before the clock runs
		b.Fatal(err)
	}
	c := cluster.StartForTest(b, cluster.Options{})
	ctx, cancel := context.WithTimeout(b.Context(), 15*time.Minute)
	defer cancel()
	ns := optedInNamespace(ctx, b, c, "bench", nil)
	configs := map[string]string{"example": filepath.Join(cluster.RepoRoot(), "deploy", "examples", "placement-config.yaml")}
	for _, n := range []int{10, 50} {
		configs[fmt.Sprintf("%dpools", n)] = writePoolsConfig(b, n)
	}
	var policies *cluster.Policies // the last applied
	for _, arm := range []string{"none", "webhook", "example", "10pools", "50pools"} {
		b.Run(arm, func(b *testing.B) {
			removePolicies(ctx, b, c, ns, policies)
			switch arm {
			case "none":
			case "webhook": // serve with the example config, through the shipped configurations
				wh, err := c.StartWebhook(ctx, cluster.WebhookOptions{ExtraArgs: []string{"--development=false"}})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = wh.Kill() })
				if err := c.RegisterWebhook(ctx, wh); err != nil {
					b.Fatal(err)
				}
			default:
				p, err := cluster.RenderPolicies(ctx, "--config", configs[arm])
				if err != nil {
					// Measure what the refusal avoids.
					b.Logf("render refused: %v", err)
					if p, err = cluster.RenderPolicies(ctx, "--config", configs[arm], "--allow-slower-than-webhook"); err != nil {
						b.Skipf("render refused even slower than the webhook: %v", err)
					}
				}
				policies = p
				applyPolicies(ctx, b, c, p)
			}
			pod := sysctlPod("bench")
			before := admissionDurations(ctx, b, c)
			for b.Loop() {
				got, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if err != nil || (arm != "none") != placed(got) {
					b.Fatalf("arm %s: %v %v", arm, err, got.Spec.NodeSelector)
				}
			}
			// The API server's own time in each kind of policy, per pod.
			after := admissionDurations(ctx, b, c)
			for plugin, h := range after {
				if d := h.Since(before[plugin]); d.Count > 0 {
					b.ReportMetric(d.Sum/float64(b.N)*1e6, plugin+"-µs/op")
				}
			}
		})
	}
}

// placed reports whether a pod came back with a nodeSelector or node affinity.
func placed(p *corev1.Pod) bool {
	return len(p.Spec.NodeSelector) > 0 || p.Spec.Affinity != nil && p.Spec.Affinity.NodeAffinity != nil
}

// admissionDurations reads the API server's admission time of each kind of policy.
func admissionDurations(ctx context.Context, tb testing.TB, c *cluster.Cluster) map[string]perf.Histogram {
	tb.Helper()
	text, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]perf.Histogram{}
	for _, plugin := range []string{"MutatingAdmissionPolicy", "ValidatingAdmissionPolicy", "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook"} {
		out[plugin] = perf.ReadHistogram(string(text), "apiserver_admission_controller_admission_duration_seconds", map[string]string{"name": plugin})
	}
	return out
}

// writePoolsConfig writes a config of n pools shaped like the example's: one label,
// a taint, five patterns of their own.
func writePoolsConfig(tb testing.TB, n int) string {
	tb.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: sysctl-placement.io/v1alpha1\nkind: PlacementConfig\npools:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: pool-%[1]d\n    nodeSelector: {sysctl-placement.io/pool: pool-%[1]d}\n    taints: [{key: dedicated, value: pool-%[1]d, effect: NoSchedule}]\n"+
			"    allowedUnsafeSysctls: [\"kernel.shm*\", \"kernel.sem\", \"kernel.msg*\", \"net.ipv4.conf.eth%[1]d.*\", \"net.ipv4.neigh.eth%[1]d.gc_stale_time\"]\n", i)
	}
	path := filepath.Join(tb.TempDir(), fmt.Sprintf("pools-%d.yaml", n))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// removePolicies deletes the rendered policies p (if any) and the webhook
// configurations and waits until a dry-run pod in ns is no longer placed.
func removePolicies(ctx context.Context, tb testing.TB, c *cluster.Cluster, ns string, p *cluster.Policies) {
	tb.Helper()
	a := c.Client.AdmissionregistrationV1()
	m, v, err := c.ShippedWebhookConfigurations(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if err := a.MutatingWebhookConfigurations().Delete(ctx, m.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		tb.Fatal(err)
	}
	if err := a.ValidatingWebhookConfigurations().Delete(ctx, v.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		tb.Fatal(err)
	}
	if p != nil {
		if err := c.DeletePolicies(ctx, p); err != nil {
			tb.Fatal(err)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := c.Client.CoreV1().Pods(ns).Create(ctx, sysctlPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && !placed(got), nil
	})
	if err != nil {
		tb.Fatalf("the policies still apply after their deletion: %v", err)
	}
}
