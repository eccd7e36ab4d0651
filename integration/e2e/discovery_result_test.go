package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// The discovery result's ConfigMap is shipped with no data and filled by serve's
// elected replica with an update: applying the manifest again, the way admins do, must
// leave the published result alone, or every upgrade would unready new replicas.
func TestAReApplyKeepsThePublishedDiscoveryResult(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	createSystemNamespace(ctx, t, c)
	manifest := filepath.Join(cluster.RepoRoot(), "deploy", "base", "discovery-result.yaml")
	configMaps := c.Client.CoreV1().ConfigMaps("sysctl-placement")
	kubectl := func(t *testing.T, args ...string) {
		t.Helper()
		out, err := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	// publish writes a result as serve does: an update of the shipped object.
	publish := func(t *testing.T) {
		t.Helper()
		cm, err := configMaps.Get(ctx, "sysctl-placement-discovery", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Both the key serve writes and the last release's, which it still reads.
		cm.BinaryData = map[string][]byte{"allowlists.json.gz": []byte("result")}
		cm.Data = map[string]string{"allowlists.json": `{"leader":"replica-1","complete":true}`}
		if _, err := configMaps.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "sysctl-placement"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"kubectl apply (client-side) twice keeps the result", []string{"apply", "-f", manifest}},
		{"kubectl apply --server-side twice keeps the result", []string{"apply", "--server-side", "-f", manifest}},
		{"kubectl apply --server-side --force-conflicts twice keeps the result", []string{"apply", "--server-side", "--force-conflicts", "-f", manifest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := configMaps.Delete(ctx, "sysctl-placement-discovery", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			kubectl(t, tc.args...)
			publish(t)
			kubectl(t, tc.args...)
			cm, err := configMaps.Get(ctx, "sysctl-placement-discovery", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if string(cm.BinaryData["allowlists.json.gz"]) != "result" || cm.Data["allowlists.json"] == "" {
				t.Errorf("kubectl %v again removed the published result: binaryData = %v, data = %v, managed fields %+v", tc.args, cm.BinaryData, cm.Data, cm.ManagedFields)
			}
		})
	}
}
