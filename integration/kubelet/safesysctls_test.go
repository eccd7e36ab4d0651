package kubelet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	_ "unsafe" // for go:linkname

	"k8s.io/apimachinery/pkg/util/version"
	_ "k8s.io/kubernetes/pkg/kubelet/sysctl" // provides kubeletSafeSysctls

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// kubeletSafeSysctls is the kubelet's getSafeSysctlAllowlist: its built-in safe list,
// less the entries the given kernel does not namespace. The exported
// SafeSysctlAllowlist asks the kernel this test runs on; linking the unexported
// function lets every kernel boundary be checked, and a rename fails the build.
//
//go:linkname kubeletSafeSysctls k8s.io/kubernetes/pkg/kubelet/sysctl.getSafeSysctlAllowlist
func kubeletSafeSysctls(ctx context.Context, getVersion func() (*version.Version, error)) []string

// kubeletRelease is the k8s.io/kubernetes release in go.mod, and the newest kubelet
// the scheduling package's safe-sysctl table describes: bump them together.
const kubeletRelease = "1.37.2"

func kubeletAllows(kernel string) []string {
	v := version.MustParseGeneric(kernel)
	return kubeletSafeSysctls(context.Background(), func() (*version.Version, error) { return v, nil })
}

// credited asks the built sysctl-placement, through `plan`, which of names a pool with
// the given kubelet and kernel versions and no allowedUnsafeSysctls is credited with:
// one pod per sysctl, admitted exactly when the pool allows its sysctl.
func credited(t *testing.T, binary, kubelet, kernel string, names []string) []string {
	t.Helper()
	config := fmt.Sprintf(`apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
pools:
  - name: only
    nodeSelector: {pool: only}
    kubeletVersion: %q
    kernelVersion: %q
`, kubelet, kernel)
	configFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var manifest bytes.Buffer
	for _, name := range names {
		pod := map[string]any{
			"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "p"},
			"spec": map[string]any{
				"containers":      []any{map[string]any{"name": "c", "image": "busybox"}},
				"securityContext": map[string]any{"sysctls": []any{map[string]any{"name": name, "value": "1"}}},
			},
		}
		doc, _ := json.Marshal(pod)
		manifest.Write(doc)
		manifest.WriteString("\n---\n")
	}
	cmd := exec.Command(binary, "plan", "--config", configFile, "-o", "json", "-f", "-")
	cmd.Stdin = &manifest
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 2) { // 2: some pod was denied
		t.Fatalf("plan: %v\n%s", err, stderr.String())
	}
	var got []string
	scanner := bufio.NewScanner(bytes.NewReader(out))
	scanner.Buffer(nil, 1<<20)
	for i := 0; scanner.Scan(); i++ {
		var res struct{ Allowed bool }
		if err := json.Unmarshal(scanner.Bytes(), &res); err != nil {
			t.Fatalf("plan's result %d: %v", i+1, err)
		}
		if res.Allowed {
			got = append(got, names[i])
		}
	}
	return got
}

func TestSafeSysctls(t *testing.T) {
	binary, err := cluster.SysctlPlacement.Path()
	if err != nil {
		t.Fatal(err)
	}
	// Every sysctl the kubelet knows as safe, on a kernel that namespaces them all.
	all := kubeletAllows("99.0.0")
	// Kernels on either side of every kernel minimum in the kubelet's table, and those
	// nodes commonly run.
	for _, kernel := range []string{"3.10.0", "3.15.9", "3.16.0", "4.4.0", "4.5.0", "4.6.0", "4.14.0", "4.15.0", "5.15.0", "6.8.0-1019-gke"} {
		want := kubeletAllows(kernel)
		slices.Sort(want)
		for _, kubelet := range []string{kubeletRelease, ""} {
			name := "a pool of " + kubeletRelease + " kubelets on kernel " + kernel + " is credited with what they allow"
			if kubelet == "" {
				name = "an unversioned pool on kernel " + kernel + " is credited with what the newest kubelet allows"
			}
			t.Run(name, func(t *testing.T) {
				got := credited(t, binary, kubelet, kernel, all)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("sysctl-placement credits %v\nthe kubelet allows %v\nupdate scheduling/safesysctls.go from k8s.io/kubernetes pkg/kubelet/sysctl/safe_sysctls.go", got, want)
				}
			})
		}
	}
}
