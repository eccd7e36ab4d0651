package discovery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestNoDiscoverySectionMeansNoDiscoverer(t *testing.T) {
	var c PoolsConfig
	d, err := c.newDiscoverer(nil, nil)
	if d != nil || err != nil {
		t.Errorf("newDiscoverer(nil) = %v, %v; want nil, nil", d, err)
	}
}

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "placement-config.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func labelledNode(name string, labels, annotations map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
}

func TestPools(t *testing.T) {
	const ipcPool = `apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
pools:
  - name: ipc
    nodeSelector: {pool: ipc}
    allowedUnsafeSysctls: ["kernel.shm*"]
`
	t.Run("without a discovery section the config's pools get their node counts", func(t *testing.T) {
		client := fake.NewClientset(labelledNode("ipc-0", map[string]string{"pool": "ipc"}, nil), labelledNode("other", nil, nil))
		p, err := NewPools(t.Context(), PoolsConfig{ConfigFile: writeConfig(t, ipcPool), Client: client})
		if err != nil {
			t.Fatal(err)
		}
		if p.discoverer != nil || p.counter == nil || !p.FirstPassDone() {
			t.Fatalf("want a node counter and no discoverer, got %+v", p)
		}
		if err := p.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		report := p.Report()
		if len(report) != 1 || report[0].Pool.Name != "ipc" || report[0].Nodes != 1 {
			t.Errorf("report = %+v, want the ipc pool with its one node", report)
		}
		if p.Store().Current() == nil {
			t.Error("no pool table in force")
		}
	})
	t.Run("a pool label given without a config discovers the pools from the Nodes", func(t *testing.T) {
		client := fake.NewClientset(labelledNode("net-0", map[string]string{"team-pool": "net"},
			map[string]string{AnnotationAllowedUnsafeSysctls: "net.core.somaxconn"}))
		p, err := NewPools(t.Context(), PoolsConfig{PoolLabel: "team-pool", AllowlistFrom: "annotation", Client: client})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		report := p.Report()
		if len(report) != 1 || report[0].Pool.Name != "net" || report[0].Source != SourceAnnotation ||
			strings.Join(report[0].Pool.AllowedUnsafeSysctls, ",") != "net.core.somaxconn" {
			t.Errorf("report = %+v, want the discovered net pool", report)
		}
	})
	t.Run("without a pool label the first well-known one a node carries is used", func(t *testing.T) {
		client := fake.NewClientset(labelledNode("gke-0", map[string]string{PoolLabelGKE: "default-pool"}, nil))
		section, err := (&PoolsConfig{Client: client}).discovery(t.Context(), nil)
		if err != nil || section.PoolLabel != PoolLabelGKE || section.AllowlistFrom != "configz" {
			t.Errorf("discovery section = %+v, %v; want %s read from configz", section, err, PoolLabelGKE)
		}
		_, err = (&PoolsConfig{Client: fake.NewClientset()}).discovery(t.Context(), nil)
		if err == nil || !strings.Contains(err.Error(), "no node carries any of") {
			t.Errorf("no labelled node: error %v", err)
		}
	})
}
