package scheduling

// This file holds the kubelet's built-in safe sysctl list as data, so that a pool with
// an older kubelet or an older kernel is not credited with sysctls its kubelet refuses.
//
// Sources (Kubernetes v1.37):
//   - names and kernel minimums: kubernetes/kubernetes pkg/kubelet/sysctl/safe_sysctls.go
//     and pkg/util/kernel/constants.go (*NamespacedKernelVersion);
//   - the release that added each name: k8s.io/pod-security-admission
//     policy/check_sysctls.go (sets for 1.0, 1.27, 1.29, 1.32 and 1.37), which is kept
//     in step with the kubelet's list.

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// safeSysctl is one entry of the kubelet's built-in safe list.
type safeSysctl struct {
	name string
	// sinceMinor is the 1.x release whose kubelet first allows the sysctl.
	sinceMinor uint
	// kernel is the first kernel in which the sysctl is namespaced; "" means any.
	kernel [2]uint
}

// safeSysctlTable is ordered by release; the index of an entry is its bit in a pool's
// safe mask, so the table must stay shorter than 64 entries.
//
// The kubelet since v1.3x always allows the nine "legacy" entries whatever the kernel
// and gates only the newer ones; older kubelets gated the keepalive/fin_timeout entries
// too. We gate every entry that has a kernel minimum: a pool on a pre-4.6 kernel is
// rare, and being conservative there can only cost a placement, never a failed pod.
var safeSysctlTable = [...]safeSysctl{
	{name: "kernel.shm_rmid_forced", sinceMinor: 0},
	{name: "net.ipv4.ip_local_port_range", sinceMinor: 0},
	{name: "net.ipv4.tcp_syncookies", sinceMinor: 0},
	{name: "net.ipv4.ping_group_range", sinceMinor: 0},
	{name: "net.ipv4.ip_unprivileged_port_start", sinceMinor: 0},
	{name: "net.ipv4.ip_local_reserved_ports", sinceMinor: 27, kernel: [2]uint{3, 16}},
	{name: "net.ipv4.tcp_keepalive_time", sinceMinor: 29, kernel: [2]uint{4, 5}},
	{name: "net.ipv4.tcp_fin_timeout", sinceMinor: 29, kernel: [2]uint{4, 6}},
	{name: "net.ipv4.tcp_keepalive_intvl", sinceMinor: 29, kernel: [2]uint{4, 5}},
	{name: "net.ipv4.tcp_keepalive_probes", sinceMinor: 29, kernel: [2]uint{4, 5}},
	{name: "net.ipv4.tcp_rmem", sinceMinor: 32, kernel: [2]uint{4, 15}},
	{name: "net.ipv4.tcp_wmem", sinceMinor: 32, kernel: [2]uint{4, 15}},
	{name: "net.ipv4.tcp_slow_start_after_idle", sinceMinor: 37, kernel: [2]uint{4, 15}},
	{name: "net.ipv4.tcp_notsent_lowat", sinceMinor: 37, kernel: [2]uint{4, 6}},
}

// safeIndex maps a normalised safe sysctl name to its bit in a safe mask.
var safeIndex = func() map[string]uint {
	m := make(map[string]uint, len(safeSysctlTable))
	for i, s := range safeSysctlTable {
		m[s.name] = uint(i)
	}
	return m
}()

// newestSafeMask is the safe set of the newest kubelet on a modern kernel: what a node
// outside every pool allows when nothing is known about it.
const newestSafeMask = uint64(1)<<len(safeSysctlTable) - 1

// safeMask returns the bit mask of the safe sysctls a kubelet of the given versions
// allows. Nil versions mean the newest kubelet and a modern kernel.
func safeMask(kubelet, kernel *version.Version) uint64 {
	var m uint64
	for i, s := range safeSysctlTable {
		if kubelet != nil && kubelet.Major() == 1 && kubelet.Minor() < s.sinceMinor {
			continue
		}
		if kernel != nil && s.kernel != [2]uint{} && !kernel.AtLeast(version.MajorMinor(s.kernel[0], s.kernel[1])) {
			continue
		}
		m |= 1 << uint(i)
	}
	return m
}

// SafeSysctls returns the built-in safe sysctls a kubelet of kubeletVersion on a node
// running kernelVersion allows. Empty versions mean the newest kubelet on a modern
// kernel. It is exported for the plan and pools commands, which show why a pool does
// or does not allow a sysctl.
func SafeSysctls(kubeletVersion, kernelVersion string) ([]string, error) {
	kv, err := parseKubeletVersion(kubeletVersion)
	if err != nil {
		return nil, err
	}
	kn, err := parseKernelVersion(kernelVersion)
	if err != nil {
		return nil, err
	}
	m := safeMask(kv, kn)
	out := make([]string, 0, len(safeSysctlTable))
	for i, s := range safeSysctlTable {
		if m&(1<<uint(i)) != 0 {
			out = append(out, s.name)
		}
	}
	return out, nil
}

// parseLenientVersion accepts what nodes report and admins type: "1.37.2", "v1.37.2",
// "v1.30.1-eks-abc", "1.31.0+k3s1", "6.8.0-1019-gke". It needs at least major.minor and
// refuses anything after the numbers that is not a pre-release or build suffix.
func parseLenientVersion(s string) (*version.Version, error) {
	v, err := version.ParseGeneric(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a version: write it as major.minor[.patch], e.g. 1.37.2", s)
	}
	// ParseGeneric keeps whatever follows the numbers; only accept the usual separators.
	rest := strings.TrimLeft(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "v")), "0123456789.")
	if rest != "" && !strings.ContainsAny(rest[:1], "-+_~") {
		return nil, fmt.Errorf("%q is not a version: only a -suffix or +suffix may follow major.minor[.patch]", s)
	}
	return v, nil
}

// parseKubeletVersion returns nil for "": an unknown kubelet is the newest this build
// knows. That is the rule where nothing else is known; discovery, which knows the
// cluster's kubelets, gives an unversioned config pool their version instead
// (discovery.Merge), so a pool is never credited with a sysctl no kubelet of the
// cluster allows.
func parseKubeletVersion(s string) (*version.Version, error) {
	if s == "" {
		return nil, nil
	}
	v, err := parseLenientVersion(s)
	if err != nil {
		return nil, err
	}
	if v.Major() != 1 {
		return nil, fmt.Errorf("%q is not a Kubernetes 1.x version", s)
	}
	return v, nil
}

// parseKernelVersion returns nil for "" (a modern kernel).
func parseKernelVersion(s string) (*version.Version, error) {
	if s == "" {
		return nil, nil
	}
	return parseLenientVersion(s)
}
