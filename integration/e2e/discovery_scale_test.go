package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

// TestDiscoveryAtScale runs three serve replicas against 500 Nodes in 50 pools (their
// /configz served by one in-process KubeletFarm, since 500 kubelets do not fit here)
// and 500 namespaces: the full 5,000-node run is perf/cmd/fleet in `go tool task
// bench`.
func TestDiscoveryAtScale(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	const qps, burst, window = 20, 40, 10 * time.Second
	res, err := perf.RunFleet(ctx, c, perf.FleetOptions{
		Nodes: 500, Pools: 50, Namespaces: 500, Replicas: 3,
		QPS: qps, Refresh: 20 * time.Second, Window: window,
		LoadRate: 50, LoadDuration: 10 * time.Second,
		Work: t.TempDir(), Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a replica joining or restarting is ready from the shared result within 10s", func(t *testing.T) {
		for i, took := range append(res.FollowerReady, res.RestartedReady) {
			if took > 10*time.Second {
				t.Errorf("replica %d was ready after %s; want at most 10s", i+2, took)
			}
		}
	})
	t.Run("a restarted replica reads no kubelet", func(t *testing.T) {
		if res.RestartedProbes != 0 {
			t.Errorf("the restarted replica read %.0f kubelets; want none", res.RestartedProbes)
		}
	})
	t.Run("probes stay within the QPS however many replicas run", func(t *testing.T) {
		limit := qps + burst/window.Seconds() + 1
		for _, r := range []perf.FleetRates{res.OneReplica, res.AllReplicas} {
			if r.ProbesPerSecond > limit {
				t.Errorf("%d replicas made %.1f probes/s; want at most %.1f (--discovery-qps %d, burst %d)", r.Replicas, r.ProbesPerSecond, limit, qps, burst)
			}
		}
		if res.AllReplicas.ProbesPerSecond == 0 {
			t.Error("no kubelet was read in the window with all replicas: drift would go unnoticed")
		}
	})
	t.Run("each replica stays under 96 MiB", func(t *testing.T) {
		for i, rss := range res.RSS {
			if rss >= 96<<20 {
				t.Errorf("replica %d: RSS %d MiB; want under 96", i+1, rss>>20)
			}
		}
	})
	t.Run("admission keeps answering while the elected replica reads kubelets", func(t *testing.T) {
		if res.Admission.Errors != 0 || res.Admission.Requests == 0 || res.ProbesDuringLoad == 0 {
			t.Errorf("%d of %d admissions failed (%v) during %d probes; want none failed, some probes", res.Admission.Errors, res.Admission.Requests, res.Admission.ErrorKinds, res.ProbesDuringLoad)
		}
		t.Logf("admission p99 %s during %d probes", res.Admission.P99, res.ProbesDuringLoad)
	})
}
