package cluster

import (
	"context"
	"fmt"
	_ "unsafe" // for go:linkname

	"k8s.io/apimachinery/pkg/util/version"
	_ "k8s.io/kubernetes/pkg/kubelet/sysctl" // provides kubeletSafeSysctls
)

// kubeletSafeSysctls is the kubelet's own getSafeSysctlAllowlist: the safe sysctls
// (the table in pkg/kubelet/sysctl/safe_sysctls.go) that a node with the given kernel
// supports. The exported SafeSysctlAllowlist asks the kernel this process runs on;
// a simulated node has its own kernel version, so the unexported function that takes
// the version is linked in instead of copying the table. If Kubernetes renames it,
// the build fails at link time — it cannot silently drift.
//
//go:linkname kubeletSafeSysctls k8s.io/kubernetes/pkg/kubelet/sysctl.getSafeSysctlAllowlist
func kubeletSafeSysctls(ctx context.Context, getVersion func() (*version.Version, error)) []string

// safeSysctlsForKernel returns the safe sysctls a v1.37 kubelet allows on a node
// running the given kernel (e.g. "6.8.0-1015-gcp").
func safeSysctlsForKernel(ctx context.Context, kernel string) ([]string, error) {
	v, err := version.ParseGeneric(kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel version %q: %w", kernel, err)
	}
	return kubeletSafeSysctls(ctx, func() (*version.Version, error) { return v, nil }), nil
}
