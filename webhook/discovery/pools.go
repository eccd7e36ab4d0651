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
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/component-helpers/node/util/sysctl"

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

// Allowlist is what one node's kubelet allows, as last read.
type Allowlist struct {
	// Known is false when the allowlist was never read (probe pending or failing).
	Known bool
	// Patterns are the allowedUnsafeSysctls entries as the kubelet reported them.
	Patterns []string
	// Err is the last probe error; with Known, the patterns are the last known ones.
	Err error
}

// AllowlistFunc returns the allowlist of a node. For annotation discovery it reads the
// node; for configz discovery it looks up the prober's results.
type AllowlistFunc func(node *corev1.Node) Allowlist

// AnnotationAllowlist reads AnnotationAllowedUnsafeSysctls. A node without the
// annotation allows no unsafe sysctl.
func AnnotationAllowlist(node *corev1.Node) Allowlist {
	return Allowlist{Known: true, Patterns: splitList(node.Annotations[AnnotationAllowedUnsafeSysctls])}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// PatternValidator reports why an allowlist entry is not usable, or nil. It applies the
// config file's rules.
type PatternValidator func(pattern string) error

// ValidatePattern checks an allowlist entry exactly as a config pool's
// allowedUnsafeSysctls entry is checked.
func ValidatePattern(pattern string) error {
	if err := scheduling.ValidateSysctlPattern(pattern); err != nil {
		return fmt.Errorf("%q: %w", pattern, err)
	}
	return nil
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

// ignoredTaintPrefixes are taints that come and go with a node's lifecycle (not-ready,
// unreachable, cordoned, being scaled down); they say nothing about the pool.
var ignoredTaintPrefixes = []string{
	"node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "ToBeDeletedByClusterAutoscaler",
	"DeletionCandidateOfClusterAutoscaler", "karpenter.sh/disrupted", "karpenter.sh/disruption",
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

type taintKey struct {
	key, value string
	effect     corev1.TaintEffect
}

// commonTaints returns the NoSchedule/NoExecute taints every node carries and reports
// those only some carry.
func commonTaints(nodes []*corev1.Node, problems []Problem) ([]corev1.Taint, []Problem) {
	count := map[taintKey]int{}
	var order []taintKey
	for _, n := range nodes {
		seen := map[taintKey]bool{}
		for _, t := range n.Spec.Taints {
			if (t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute) || ignoredTaint(t.Key) {
				continue
			}
			k := taintKey{t.Key, t.Value, t.Effect}
			if seen[k] {
				continue
			}
			seen[k] = true
			if count[k] == 0 {
				order = append(order, k)
			}
			count[k]++
		}
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.key != b.key {
			return a.key < b.key
		}
		if a.value != b.value {
			return a.value < b.value
		}
		return a.effect < b.effect
	})
	var taints []corev1.Taint
	for _, k := range order {
		if count[k] == len(nodes) {
			taints = append(taints, corev1.Taint{Key: k.key, Value: k.value, Effect: k.effect})
			continue
		}
		var on []string
		for _, n := range nodes {
			for _, t := range n.Spec.Taints {
				if t.Key == k.key && t.Value == k.value && t.Effect == k.effect {
					on = append(on, n.Name)
					break
				}
			}
		}
		partial := corev1.Taint{Key: k.key, Value: k.value, Effect: k.effect}
		problems = append(problems, Problem{ProblemPartialTaint, fmt.Sprintf("%s is on %d of %d nodes (%s); not tolerated by placed pods",
			partial.ToString(), len(on), len(nodes), abbreviate(on))})
	}
	return taints, problems
}

func ignoredTaint(key string) bool {
	for _, p := range ignoredTaintPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

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
// the nodes whose version is invalid; a node reporting none is left out.
func pickVersion(nodes []*corev1.Node, get func(*corev1.Node) string, better func(v, best *version.Version) bool) (string, []string) {
	var picked string
	var pickedV *version.Version
	var bad []string
	for _, n := range nodes {
		s := get(n)
		if s == "" {
			continue
		}
		v, err := version.ParseGeneric(s)
		if err != nil || validVersion(s) != nil {
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

// poolAllowlist intersects the nodes' allowlists and reports disagreement, unreachable
// kubelets and invalid patterns.
func poolAllowlist(nodes []*corev1.Node, opts GroupOptions, problems []Problem) ([]string, []Problem) {
	var (
		result      []string
		have        bool
		unreachable []string
		unknown     []string
		invalid     = map[string][]string{}
		distinct    = map[string][]string{}
	)
	for _, n := range nodes {
		al := opts.Allowlist(n)
		if al.Err != nil {
			what := n.Name
			if al.Known {
				what += " (using its last known allowlist)"
			}
			unreachable = append(unreachable, fmt.Sprintf("%s: %v", what, al.Err))
		}
		if !al.Known {
			unknown = append(unknown, n.Name)
			continue
		}
		var valid []string
		for _, p := range al.Patterns {
			if err := opts.Validate(p); err != nil {
				invalid[p] = append(invalid[p], n.Name)
				continue
			}
			valid = append(valid, sysctl.NormalizeName(p))
		}
		valid = normalizeSet(valid)
		key := strings.Join(valid, ",")
		distinct[key] = append(distinct[key], n.Name)
		if !have {
			result, have = valid, true
		} else {
			result = Intersect(result, valid)
		}
	}
	if len(unreachable) > 0 {
		sort.Strings(unreachable)
		problems = append(problems, Problem{ProblemKubeletUnreachable, abbreviate(unreachable)})
	}
	// A node not read yet (no kubelet answered for it, nor did the shared result name
	// it) counts for nothing: a pool of only such nodes allows no unsafe sysctl.
	if len(unknown) > 0 && len(unreachable) == 0 {
		problems = append(problems, Problem{ProblemKubeletUnreachable, "not read yet: " + abbreviate(unknown)})
	}
	for _, p := range slices.Sorted(maps.Keys(invalid)) {
		problems = append(problems, Problem{ProblemInvalidPattern, fmt.Sprintf("%q on %s is not a namespaced sysctl pattern a kubelet accepts; ignored", p, abbreviate(invalid[p]))})
	}
	if len(distinct) > 1 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(distinct)) {
			shown := k
			if shown == "" {
				shown = "none"
			}
			parts = append(parts, fmt.Sprintf("[%s] on %s", shown, abbreviate(distinct[k])))
		}
		problems = append(problems, Problem{ProblemNodesDisagree, fmt.Sprintf("nodes allow different unsafe sysctls: %s; the pool allows only [%s]",
			strings.Join(parts, "; "), strings.Join(result, ","))})
	}
	return result, problems
}

// Intersect returns the patterns matching exactly the sysctls both lists match. Both
// lists hold normalised exact names or prefixes ending in '*'. A pattern of one list
// that the other covers (the same name, or a prefix pattern it starts with) is kept:
// the intersection of two patterns is always the narrower one, or nothing.
func Intersect(a, b []string) []string {
	var out []string
	for _, p := range a {
		if covered(p, b) {
			out = append(out, p)
		}
	}
	for _, p := range b {
		if covered(p, a) {
			out = append(out, p)
		}
	}
	return normalizeSet(out)
}

// covered reports whether every sysctl p matches is matched by a pattern of list.
func covered(p string, list []string) bool {
	pp, pPrefix := strings.CutSuffix(p, "*")
	for _, q := range list {
		qp, qPrefix := strings.CutSuffix(q, "*")
		switch {
		case !qPrefix && !pPrefix && p == q:
			return true
		case qPrefix && strings.HasPrefix(pp, qp):
			return true
		}
	}
	return false
}

// normalizeSet sorts, removes duplicates and drops patterns covered by another entry.
func normalizeSet(list []string) []string {
	sort.Strings(list)
	var out []string
	for i, p := range list {
		if i > 0 && list[i-1] == p {
			continue
		}
		redundant := false
		for _, q := range list {
			if q != p && strings.HasSuffix(q, "*") && covered(p, []string{q}) {
				redundant = true
				break
			}
		}
		if !redundant {
			out = append(out, p)
		}
	}
	return out
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
