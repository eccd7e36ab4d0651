package cluster

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// StartForTest starts a cluster for one test and stops it when the test ends. When
// the control plane has not been built the test fails — it is not skipped — with the
// command that builds it, so a missing build step never passes as green. When the
// test fails, the tail of each component's log is logged.
func StartForTest(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.WorkDir == "" {
		opts.WorkDir = t.TempDir()
	}
	started := time.Now()
	c, err := Start(context.Background(), opts)
	if errors.Is(err, ErrBinariesMissing) {
		t.Fatalf("the integration tests need a real control plane: %v", err)
	}
	if err != nil {
		t.Fatalf("could not start the cluster: %v", err)
	}
	t.Logf("control plane up in %s at %s (kubeconfig %s)", time.Since(started).Round(time.Millisecond), c.URL, c.Kubeconfig)
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
				t.Logf("last lines of %s.log:\n%s", name, process.Tail(filepath.Join(c.WorkDir, name+".log"), 15))
			}
			c.mu.Lock()
			kubelets := c.kubelets
			c.mu.Unlock()
			for _, k := range kubelets {
				t.Logf("last lines of %s:\n%s", k.proc.LogPath, k.proc.LogTail(8))
			}
			c.mu.Lock()
			realNodes := c.realNodes
			c.mu.Unlock()
			for _, rn := range realNodes {
				procs := []*process.Process{rn.containerd}
				if rn.kubelet != nil {
					procs = append(procs, rn.kubelet.proc)
				}
				for _, p := range procs {
					if p != nil {
						t.Logf("last lines of %s:\n%s", p.LogPath, p.LogTail(20))
					}
				}
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	return c
}
