// Package discovery reads node pools from the live cluster: it groups Nodes by a pool
// label, takes each pool's common taints and its lowest kubelet and kernel versions
// from the Nodes, and reads what each kubelet allows from its /configz endpoint or from
// a node annotation. The result is merged with the static pools of the config file and
// published to the webhook's config Store; the admission path only ever reads that
// in-memory table.
//
// Everything that decides (grouping, intersection, merging) is a pure function of
// trimmed Nodes and probe results, so it is tested without a cluster.
package discovery

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// AnnotationAllowedUnsafeSysctls on a Node lists what its kubelet allows, comma
// separated, for allowlistFrom: annotation (written when the node is provisioned,
// e.g. from the same variable that sets the kubelet's --allowed-unsafe-sysctls).
const AnnotationAllowedUnsafeSysctls = scheduling.AnnotationPrefix + "allowed-unsafe-sysctls"

// Well-known pool labels of managed node pools, documented as discovery.poolLabel
// values.
const (
	PoolLabelGKE       = "cloud.google.com/gke-nodepool"
	PoolLabelAKS       = "kubernetes.azure.com/agentpool"
	PoolLabelEKS       = "eks.amazonaws.com/nodegroup"
	PoolLabelKarpenter = "karpenter.sh/nodepool"
)

// WellKnownPoolLabels are tried, in this order, when no pool label is configured.
var WellKnownPoolLabels = []string{PoolLabelGKE, PoolLabelAKS, PoolLabelEKS, PoolLabelKarpenter}

// Source says where a pool's allowlist came from.
type Source string

const (
	// SourceConfig is a static pool from the config file.
	SourceConfig Source = "config"
	// SourceConfigz is a discovered pool whose allowlist was read from kubelets' /configz.
	SourceConfigz Source = "configz"
	// SourceAnnotation is a discovered pool whose allowlist came from node annotations.
	SourceAnnotation Source = "annotation"
)

// ProblemKind names one kind of discovery problem; it is a metric label value, so the
// set is fixed.
type ProblemKind string

const (
	// ProblemNodesDisagree: nodes of one pool allow different sysctls; the pool allows
	// only what all of them allow.
	ProblemNodesDisagree ProblemKind = "NodesDisagree"
	// ProblemKubeletUnreachable: a kubelet's /configz could not be read; its last known
	// allowlist is used, or, if there is none, the node is left out of the allowlist.
	ProblemKubeletUnreachable ProblemKind = "KubeletUnreachable"
	// ProblemPartialTaint: a NoSchedule/NoExecute taint is on only some of the pool's
	// nodes; it is not added as a toleration, so pods may still be kept off those nodes.
	ProblemPartialTaint ProblemKind = "PartialTaint"
	// ProblemInvalidPattern: an allowlist entry the kubelet would refuse; it is not used.
	ProblemInvalidPattern ProblemKind = "InvalidPattern"
	// ProblemInvalidVersion: a node reports a kubelet or kernel version that cannot be
	// parsed; the pool's version is taken from its other nodes.
	ProblemInvalidVersion ProblemKind = "InvalidVersion"
	// ProblemNoMatchingNodes: a pool of the config file selects no node (fine for a
	// pool scaled to zero, a typo otherwise).
	ProblemNoMatchingNodes ProblemKind = "NoMatchingNodes"
	// ProblemOverriddenByConfig: a discovered pool has the name or the selector of a
	// config pool; the config pool wins.
	ProblemOverriddenByConfig ProblemKind = "OverriddenByConfig"
	// ProblemInvalidPool: a discovered pool cannot be used at all (e.g. its pool label
	// value is not a valid pool name).
	ProblemInvalidPool ProblemKind = "InvalidPool"
	// ProblemNotListed: discovery.onlyListedPools is set and no discovery.pools entry
	// names the discovered pool; it is shown but not used.
	ProblemNotListed ProblemKind = "NotListed"
)

// ProblemKinds lists every kind, so metrics can report zero for the absent ones.
var ProblemKinds = []ProblemKind{
	ProblemNodesDisagree, ProblemKubeletUnreachable, ProblemPartialTaint, ProblemInvalidPattern,
	ProblemInvalidVersion, ProblemNoMatchingNodes, ProblemOverriddenByConfig, ProblemInvalidPool, ProblemNotListed,
}

// Problem is one finding about a pool: a short kind and the offending values.
type Problem struct {
	Kind   ProblemKind `json:"kind"`
	Detail string      `json:"detail"`
}

// PoolStatus is a pool as the webhook sees it, with where it came from and what is
// wrong with it.
type PoolStatus struct {
	// Pool is what placement uses.
	Pool scheduling.Pool `json:"pool"`
	// Nodes is how many nodes the pool's selector matches.
	Nodes int `json:"nodes"`
	// Source is config, configz or annotation.
	Source Source `json:"source"`
	// Problems are sorted by kind.
	Problems []Problem `json:"problems,omitempty"`
}

// GroupOptions configure Group.
type GroupOptions struct {
	// PoolLabel is the node label whose value names a node's pool.
	PoolLabel string
	// Source is SourceConfigz or SourceAnnotation.
	Source Source
	// Allowlist returns each node's allowlist.
	Allowlist AllowlistFunc
	// Validate checks each pattern; default ValidatePattern.
	Validate PatternValidator
}

// Group turns Nodes into pools: one per value of the pool label (nodes without it are in
// no pool), sorted by name.
func Group(nodes []*corev1.Node, opts GroupOptions) []PoolStatus {
	if opts.Validate == nil {
		opts.Validate = ValidatePattern
	}
	byPool := map[string][]*corev1.Node{}
	for _, n := range nodes {
		if v, ok := n.Labels[opts.PoolLabel]; ok && v != "" {
			byPool[v] = append(byPool[v], n)
		}
	}
	values := slices.Sorted(maps.Keys(byPool))
	out := make([]PoolStatus, 0, len(values))
	for _, v := range values {
		out = append(out, groupPool(v, byPool[v], opts))
	}
	return out
}

func groupPool(value string, nodes []*corev1.Node, opts GroupOptions) PoolStatus {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	st := PoolStatus{
		Pool:   scheduling.Pool{Name: PoolName(value), NodeSelector: map[string]string{opts.PoolLabel: value}},
		Nodes:  len(nodes),
		Source: opts.Source,
	}
	if msgs := validation.IsDNS1123Subdomain(st.Pool.Name); len(msgs) > 0 {
		st.Problems = append(st.Problems, Problem{ProblemInvalidPool, fmt.Sprintf("%s=%s cannot name a pool: %s", opts.PoolLabel, value, strings.Join(msgs, "; "))})
	}
	st.Pool.Taints, st.Problems = commonTaints(nodes, st.Problems)
	var bad []string
	st.Pool.KubeletVersion, bad = lowestVersion(nodes, kubeletVersion)
	if len(bad) > 0 {
		st.Problems = append(st.Problems, Problem{ProblemInvalidVersion, "kubelet version of " + strings.Join(bad, ", ")})
	}
	st.Pool.KernelVersion, bad = lowestVersion(nodes, kernelVersion)
	if len(bad) > 0 {
		st.Problems = append(st.Problems, Problem{ProblemInvalidVersion, "kernel version of " + strings.Join(bad, ", ")})
	}
	st.Pool.AllowedUnsafeSysctls, st.Problems = poolAllowlist(nodes, opts, st.Problems)
	sortProblems(st.Problems)
	return st
}

var invalidNameChars = regexp.MustCompile(`[^a-z0-9.-]+`)

// PoolName turns a pool label value into a pool name (a DNS subdomain, as config pool
// names are): lowercased, other characters replaced by '-'.
func PoolName(value string) string {
	name := invalidNameChars.ReplaceAllString(strings.ToLower(value), "-")
	return strings.Trim(name, "-.")
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Kind < ps[j].Kind })
}

// abbreviate lists at most five items, so a pool of hundreds of nodes gives a readable
// line.
func abbreviate(items []string) string {
	const max = 5
	if len(items) <= max {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:max], ", "), len(items)-max)
}
