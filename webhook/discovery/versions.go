package discovery

// A pool's kubelet and kernel versions: the lowest its nodes run, so no pool is
// credited with a safe sysctl one of its kubelets refuses.

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/version"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

func kubeletVersion(n *corev1.Node) string { return n.Status.NodeInfo.KubeletVersion }
func kernelVersion(n *corev1.Node) string  { return n.Status.NodeInfo.KernelVersion }

// lowestVersion returns the lowest version the nodes report (as reported, so the
// scheduling package parses it the same way) and the nodes whose version is invalid.
// The lowest decides the pool's safe set: a sysctl only the newer nodes allow would
// fail on the older ones.
func lowestVersion(nodes []*corev1.Node, get func(*corev1.Node) string) (string, []string) {
	return pickVersion(nodes, get, func(v, best *version.Version) bool { return v.LessThan(best) })
}

// highestVersion returns the highest version the nodes report, as lowestVersion does.
func highestVersion(nodes []*corev1.Node, get func(*corev1.Node) string) (string, []string) {
	return pickVersion(nodes, get, func(v, best *version.Version) bool { return best.LessThan(v) })
}

// pickVersion returns the version the nodes report that is better than every other, and
// the nodes whose version is invalid; a node reporting none is left out. Each distinct
// version is parsed once: a pool's nodes report one or two, and parsing them again for
// every node was most of what a regroup allocated (docs/performance.md, "Memory").
func pickVersion(nodes []*corev1.Node, get func(*corev1.Node) string, better func(v, best *version.Version) bool) (string, []string) {
	var picked string
	var pickedV *version.Version
	var bad []string
	parsed := map[string]*version.Version{} // nil: not a valid version
	for _, n := range nodes {
		s := get(n)
		if s == "" {
			continue
		}
		v, seen := parsed[s]
		if !seen {
			if pv, err := version.ParseGeneric(s); err == nil && validVersion(s) == nil {
				v = pv
			}
			parsed[s] = v
		}
		if v == nil {
			bad = append(bad, fmt.Sprintf("%s (%q)", n.Name, s))
			continue
		}
		if pickedV == nil || better(v, pickedV) {
			picked, pickedV = s, v
		}
	}
	return picked, bad
}

// validVersion asks the scheduling package whether it accepts s as a kernel version
// (the laxer of its two version rules; a kubelet version must also be 1.x).
func validVersion(s string) error {
	_, err := scheduling.SafeSysctls("", s)
	return err
}
