package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// BenchmarkAuditOf5000Pods measures `sysctl-placement audit` over 5,000 pods asking for
// sysctls in 10 namespaces, created as objects in the test API server (bound to a node
// no kubelet serves, so nothing else touches them), with the example config's pools:
//
//	go test -run '^$' -bench BenchmarkAuditOf5000Pods -benchtime 3x ./e2e/
//
// It reports the audit's own wall time (listing with Limit/Continue, analysis, JSON
// output) per run; it asserts nothing about it.
func BenchmarkAuditOf5000Pods(b *testing.B) {
	const pods, namespaces = 5000, 10
	c := cluster.StartForTest(b, cluster.Options{})
	ctx, cancel := context.WithTimeout(b.Context(), 15*time.Minute)
	defer cancel()
	if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
		b.Fatal(err)
	}
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}
		if i%2 == 0 {
			ns.Labels = map[string]string{"sysctl-placement.io/enabled": "true"}
		}
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make(chan error, 16)
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < pods; i = int(next.Add(1)) - 1 {
				p := sysctlPod(fmt.Sprintf("pod-%d", i))
				p.Spec.NodeName = "unserved"
				if _, err := c.Client.CoreV1().Pods(fmt.Sprintf("bench-%d", i%namespaces)).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.Logf("created %d pods in %s", pods, time.Since(start).Round(time.Millisecond))

	if _, err := cluster.SysctlPlacement.Path(); err != nil { // built once, before the clock runs
		b.Fatal(err)
	}
	a := auditor{kubeconfig: c.Kubeconfig}
	config := filepath.Join(cluster.RepoRoot(), "deploy", "examples", "placement-config.yaml")
	var seconds float64
	b.ResetTimer()
	for b.Loop() {
		out, errOut, code := a.run(ctx, b, "audit", "--config", config, "-o", "json")
		if code != 0 {
			b.Fatalf("audit exit %d\n%s", code, errOut)
		}
		var r auditReport
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			b.Fatal(err)
		}
		if r.Listed.Pods != pods || r.Totals.Workloads != pods {
			b.Fatalf("audit read %d pods and reported %d workloads, want %d", r.Listed.Pods, r.Totals.Workloads, pods)
		}
		seconds += r.Listed.Seconds
	}
	b.ReportMetric(seconds/float64(b.N), "audit-s/op")
}
