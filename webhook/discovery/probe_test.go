package discovery

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// gatedProber answers every read once release is closed.
type gatedProber struct{ release chan struct{} }

func (p gatedProber) Probe(ctx context.Context, _ *corev1.Node) ([]string, error) {
	select {
	case <-p.release:
		return []string{"kernel.sem"}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A first install waits for every kubelet to be read before any pool can be trusted:
// that pass runs at FirstPassQPS (5,000 nodes in 25 s at the default), the refreshes
// after it at the gentle QPS.
func TestTheFirstPassReadsFasterThanTheRefreshes(t *testing.T) {
	client := fake.NewClientset()
	for _, name := range []string{"ipc-1", "ipc-2"} {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), node(name, "ipc"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	prober := gatedProber{release: make(chan struct{})}
	f := launchReplica(t, client, Config{Prober: prober, QPS: 20, FirstPassQPS: 300})
	eventually(t, "the first pass reads", func() bool { return f.disc.probeRate() != 0 })
	if got := f.disc.probeRate(); got != 300 {
		t.Errorf("during the first pass kubelets are read at %v/s, want FirstPassQPS 300", got)
	}
	close(prober.release)
	if err := f.disc.WaitForFirstPass(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refresh rate applies", func() bool { return f.disc.probeRate() == 20 })
}

func TestTheFirstPassRateIsNeverBelowTheSteadyRate(t *testing.T) {
	combiner, err := NewCombiner(CombinerConfig{Sink: &recordingSink{}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Client: fake.NewClientset(), PoolLabel: testLabel, Source: SourceAnnotation, Publisher: combiner, QPS: 500}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.FirstPassQPS != 500 || cfg.Workers != 16 {
		t.Errorf("FirstPassQPS %v and Workers %d, want 500 (never slower than QPS) and 16", cfg.FirstPassQPS, cfg.Workers)
	}
}
