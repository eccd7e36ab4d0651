package discovery

// A pool's allowlist: what every one of its kubelets allows (read from /configz
// or a node annotation), patterns validated as the kubelet validates them.

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/node/util/sysctl"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

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
		last        normalized
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
		// A pool's nodes normally allow the same: validate, normalise and intersect an
		// allowlist again only when it differs from the node before's (intersecting
		// with the same list again changes nothing), so a regroup of thousands of nodes
		// does not allocate per node.
		if !last.ok || !slices.Equal(al.Patterns, last.raw) {
			last = normalizedAllowlist(al.Patterns, opts.Validate)
			if !have {
				result, have = last.valid, true
			} else {
				result = Intersect(result, last.valid)
			}
		}
		for _, p := range last.invalid {
			invalid[p] = append(invalid[p], n.Name)
		}
		distinct[last.key] = append(distinct[last.key], n.Name)
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

// normalized is an allowlist as a pool reads it: the valid patterns normalised (and
// joined, key), and the invalid ones.
type normalized struct {
	ok      bool
	raw     []string
	valid   []string
	key     string
	invalid []string
}

func normalizedAllowlist(patterns []string, validate PatternValidator) normalized {
	out := normalized{ok: true, raw: patterns}
	for _, p := range patterns {
		if err := validate(p); err != nil {
			out.invalid = append(out.invalid, p)
			continue
		}
		out.valid = append(out.valid, sysctl.NormalizeName(p))
	}
	out.valid = normalizeSet(out.valid)
	out.key = strings.Join(out.valid, ",")
	return out
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
