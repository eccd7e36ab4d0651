package scheduling

// Step 3: candidates. The pools this namespace may use, compatible with the pod's own
// nodeSelector and required node affinity, whose kubelets allow every sysctl still to
// be placed.

import (
	"math/bits"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/node/util/sysctl"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// parsedTerm is one required nodeSelectorTerm, reduced to its label requirements.
type parsedTerm struct {
	reqs  []parsedReq
	empty bool
}

// parsedReq is one label requirement, compiled by nodeaffinity so that its semantics
// (In, NotIn, Exists, DoesNotExist, Gt, Lt) are the scheduler's own.
type parsedReq struct {
	req corev1.NodeSelectorRequirement
	sel *nodeaffinity.NodeSelector // nil when the requirement does not parse
}

// parseAffinity compiles each label requirement of the pod's required node affinity
// once, so every pool is checked against the same parsed requirements.
func (p *planner) parseAffinity() {
	a := p.pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	p.affinity = make([]parsedTerm, len(terms))
	p.affinityMatchesNothing = true
	for i := range terms {
		t := &terms[i]
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			// An empty term selects no node (nodeaffinity skips it).
			p.affinity[i].empty = true
			continue
		}
		p.affinityMatchesNothing = false
		reqs := make([]parsedReq, len(t.MatchExpressions))
		for j, r := range t.MatchExpressions {
			reqs[j].req = r
			sel, err := nodeaffinity.NewNodeSelector(&corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{r}}}})
			if err == nil {
				reqs[j].sel = sel
			}
		}
		p.affinity[i].reqs = reqs
	}
}

// warnUnknownPools warns about names in the namespace's pools annotation that no pool
// has: a typo there silently narrows the namespace to fewer pools.
func (p *planner) warnUnknownPools() {
	list := p.poolList
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		item = strings.TrimSpace(item)
		if _, ok := p.c.byName[item]; item != "" && !ok {
			p.warn("namespace annotation " + AnnotationPools + " names unknown pool " + quoteShort(item))
		}
	}
}

// exclusion says why a pool is not a candidate; zero means it is one.
type exclusion uint8

const (
	excludedByAnnotation exclusion = 1 << iota
	excludedByNamespaceSelector
	excludedByNodeSelector
	excludedByAffinity
	excludedByTolerationsWhitelist
	excludedBySysctls
)

// candidates is step 3: the pools this namespace may use, compatible with the pod's
// own constraints, that allow every remaining sysctl. The sysctl condition is computed
// for all pools at once on the precomputed bitsets; the other checks run only on the
// pools that pass it.
func (p *planner) candidates(out []int) []int {
	c := p.c
	var buf [4]uint64
	var allowed []uint64
	if c.words <= len(buf) {
		allowed = buf[:c.words]
	} else {
		allowed = make([]uint64, c.words)
	}
	for w := range allowed {
		allowed[w] = ^uint64(0)
	}
	var matchBuf [8]int
	for _, s := range p.sysctls {
		if s.dropped {
			continue
		}
		if s.ns == sysctl.UnknownNamespace {
			return out // the kubelet allows no sysctl it does not know to be namespaced
		}
		exact := c.exactPools[s.name]
		var safe []uint64
		if s.safe {
			safe = c.safePools[s.safeBit]
		}
		matched := matchBuf[:0]
		for k := range c.prefixPools {
			if strings.HasPrefix(s.name, c.prefixPools[k].prefix) {
				matched = append(matched, k)
			}
		}
		for w := range allowed {
			var v uint64
			if exact != nil {
				v |= exact[w]
			}
			if safe != nil {
				v |= safe[w]
			}
			for _, k := range matched {
				v |= c.prefixPools[k].pools[w]
			}
			allowed[w] &= v
		}
	}
	for w, set := range allowed {
		for set != 0 {
			i := w*64 + bits.TrailingZeros64(set)
			set &= set - 1
			if !p.excluded(&c.pools[i]) {
				out = append(out, i)
			}
		}
	}
	return out
}

// poolCheck is one of step 3's checks besides the sysctls.
type poolCheck struct {
	ex    exclusion
	fails func(p *planner, pool *compiledPool) bool
}

// poolChecks run in this order, cheapest first.
var poolChecks = [...]poolCheck{
	{excludedByAnnotation, func(p *planner, pool *compiledPool) bool {
		return p.hasPoolList && !listContains(p.poolList, pool.name)
	}},
	{excludedByNamespaceSelector, func(p *planner, pool *compiledPool) bool {
		return pool.nsSelector != nil && !pool.nsSelector.Matches(labels.Set(p.in.Namespace.Labels))
	}},
	{excludedByNodeSelector, func(p *planner, pool *compiledPool) bool {
		_, conflict := p.selectorConflict(pool)
		return conflict
	}},
	{excludedByAffinity, func(p *planner, pool *compiledPool) bool { return !p.affinityAllows(pool) }},
	{excludedByTolerationsWhitelist, func(p *planner, pool *compiledPool) bool {
		_, outside := p.taintOutsideWhitelist(pool)
		return outside
	}},
}

// excluded reports whether a pool fails one of poolChecks, stopping at the first; the
// sysctls candidates has checked on the bitsets.
func (p *planner) excluded(pool *compiledPool) bool {
	for i := range poolChecks {
		if poolChecks[i].fails(p, pool) {
			return true
		}
	}
	return false
}

// exclusions collects every reason a pool is not a candidate, for the denial message.
func (p *planner) exclusions(pool *compiledPool) exclusion {
	var ex exclusion
	for i := range poolChecks {
		if poolChecks[i].fails(p, pool) {
			ex |= poolChecks[i].ex
		}
	}
	for i := range p.sysctls {
		if refuses(pool, &p.sysctls[i]) {
			ex |= excludedBySysctls
			break
		}
	}
	return ex
}

// refuses reports whether the pool's kubelet would refuse s, a sysctl not dropped.
func refuses(pool *compiledPool, s *podSysctl) bool {
	return !s.dropped && (s.ns == sysctl.UnknownNamespace || !pool.allows(s.name, s.safeBit, s.safe))
}

// selectorConflict returns the first key the pod's nodeSelector sets to another value
// than the pool's selector.
func (p *planner) selectorConflict(pool *compiledPool) (string, bool) {
	ns := p.pod.Spec.NodeSelector
	if len(ns) == 0 {
		return "", false
	}
	for _, e := range pool.selector {
		if v, ok := ns[e.key]; ok && v != e.value {
			return e.key, true
		}
	}
	return "", false
}

// affinityAllows evaluates the pod's required node affinity against the pool "as far as
// decidable from labels": within each term only requirements on keys of the pool's
// selector are evaluated (on a node carrying just those labels); other keys and
// matchFields depend on the node and count as satisfiable. Terms are ORed.
func (p *planner) affinityAllows(pool *compiledPool) bool {
	if p.affinity == nil {
		return true
	}
	if p.affinityMatchesNothing {
		return false
	}
	for _, t := range p.affinity {
		if t.empty {
			continue
		}
		ok := true
		for _, r := range t.reqs {
			if _, decidable := pool.pool.NodeSelector[r.req.Key]; !decidable {
				continue
			}
			if r.sel == nil || !r.sel.Match(pool.node) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// listContains reports whether the comma-separated list holds name (spaces around
// entries are ignored). It does not allocate: it runs on every Plan for every pool.
func listContains(list, name string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		if strings.TrimSpace(item) == name {
			return true
		}
	}
	return false
}
