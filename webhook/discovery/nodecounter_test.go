package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	logtest "github.com/sirupsen/logrus/hooks/test"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

func TestNodeCounter(t *testing.T) {
	static, err := scheduling.CompilePools(scheduling.Policy{}, []scheduling.Pool{
		{Name: "ipc", NodeSelector: map[string]string{"pool": "ipc"}, AllowedUnsafeSysctls: []string{"kernel.shm*"}},
		{Name: "sample", NodeSelector: map[string]string{"cloud.google.com/gke-nodepool": "db-ipc"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ipc-1", Labels: map[string]string{"pool": "ipc"}}})
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	logger, hook := logtest.NewNullLogger()
	combiner, err := NewCombiner(CombinerConfig{Sink: &recordingSink{}, Metrics: metrics, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	combiner.Set(static)
	counter, err := NewNodeCounter(client, combiner)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- counter.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the counter ended with %v, want nil once ctx ends", err)
		}
	}()

	poolNodes := func(pool string) float64 { return testutil.ToFloat64(metrics.poolNodes.WithLabelValues(pool)) }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	noMatchWarnings := func() int {
		n := 0
		for _, e := range hook.AllEntries() {
			if e.Data["problem"] == ProblemNoMatchingNodes && e.Data["pool"] == "sample" {
				n++
			}
		}
		return n
	}

	waitFor("the pool gauge counts each config pool's nodes", func() bool { return poolNodes("ipc") == 1 && len(combiner.Report()) == 2 })
	if got := poolNodes("sample"); got != 0 {
		t.Errorf("sysctl_placement_pool_nodes{pool=sample} = %v, want 0", got)
	}
	report := combiner.Report()
	if len(report[1].Problems) != 1 || report[1].Problems[0].Kind != ProblemNoMatchingNodes {
		t.Errorf("the sample pool's problems = %+v, want NoMatchingNodes", report[1].Problems)
	}
	if n := noMatchWarnings(); n != 1 {
		t.Errorf("the pool matching no node was logged %d times, want once", n)
	}

	t.Run("another node of a matched pool changes the count but logs nothing again", func(t *testing.T) {
		if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ipc-2", Labels: map[string]string{"pool": "ipc"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor("ipc counts two nodes", func() bool { return poolNodes("ipc") == 2 })
		if n := noMatchWarnings(); n != 1 {
			t.Errorf("logged %d times, want still once", n)
		}
	})
	t.Run("a node appearing for the sample pool clears its problem", func(t *testing.T) {
		if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{"cloud.google.com/gke-nodepool": "db-ipc"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor("sample counts one node", func() bool { return poolNodes("sample") == 1 })
		if p := combiner.Report()[1].Problems; len(p) != 0 {
			t.Errorf("problems = %+v, want none", p)
		}
	})
}
