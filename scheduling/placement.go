package scheduling

// Steps 4 and 6: a pod whose own constraints already keep it on candidate pools it
// tolerates is left alone (this is also what makes a reinvoked webhook change nothing);
// otherwise the pod is placed on the highest-priority candidates with a nodeSelector or
// a required node-affinity term ANDed into its own, and exact tolerations.

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedcorev1 "k8s.io/component-helpers/scheduling/corev1"
)

// tolerates reports whether the pod tolerates every NoSchedule/NoExecute taint of the
// pool, with the scheduler's own matching (comparison operators on: if the API server
// admitted a Gt/Lt toleration, the gate is on).
func tolerates(tolerations []corev1.Toleration, pool *compiledPool) bool {
	for i := range pool.taints {
		if !schedcorev1.TolerationsTolerateTaint(noLog, tolerations, &pool.taints[i], true) {
			return false
		}
	}
	return true
}

// alreadyPlaced is the first half of step 4 plus reinvocation: the pod's nodeSelector
// implies a candidate pool whose taints it tolerates, or every required affinity term
// (with the nodeSelector) restricts the pod to tolerated candidate pools, as this
// engine's own output does.
func (p *planner) alreadyPlaced(cands []int) ([]string, bool) {
	spec := &p.pod.Spec
	for _, i := range cands {
		pool := &p.c.pools[i]
		if impliesPool(spec.NodeSelector, nil, pool) && tolerates(spec.Tolerations, pool) {
			return []string{pool.name}, true
		}
	}
	if p.affinity == nil || p.affinityMatchesNothing {
		return nil, false
	}
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	var names []string
	for ti := range terms {
		if p.affinity[ti].empty {
			continue
		}
		got, ok := p.termRestricts(&terms[ti], cands)
		if !ok {
			return nil, false
		}
		for _, n := range got {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	return names, true
}

// termRestricts reports whether every node matching the term (and the pod's
// nodeSelector) belongs to a candidate pool whose taints the pod tolerates.
func (p *planner) termRestricts(t *corev1.NodeSelectorTerm, cands []int) ([]string, bool) {
	spec := &p.pod.Spec
	// One term per pool: the term (with the nodeSelector) pins every selector label.
	for _, i := range cands {
		pool := &p.c.pools[i]
		if impliesPool(spec.NodeSelector, t.MatchExpressions, pool) && tolerates(spec.Tolerations, pool) {
			return []string{pool.name}, true
		}
	}
	// One term for pools sharing a single key: key In [v1 v2 ...] where each value is
	// exactly a candidate pool's selector.
	for _, r := range t.MatchExpressions {
		if r.Operator != corev1.NodeSelectorOpIn || len(r.Values) == 0 {
			continue
		}
		names := make([]string, 0, len(r.Values))
		all := true
		for _, v := range r.Values {
			found := false
			for _, i := range cands {
				pool := &p.c.pools[i]
				if len(pool.selector) == 1 && pool.selector[0].key == r.Key && pool.selector[0].value == v && tolerates(spec.Tolerations, pool) {
					names = append(names, pool.name)
					found = true
					break
				}
			}
			if !found {
				all = false
				break
			}
		}
		if all {
			return names, true
		}
	}
	return nil, false
}

// impliesPool reports whether a node must carry every label of the pool's selector to
// satisfy the nodeSelector and the (ANDed) requirements: each label is either in the
// nodeSelector or pinned by a single-value In requirement.
func impliesPool(nodeSelector map[string]string, reqs []corev1.NodeSelectorRequirement, pool *compiledPool) bool {
	for _, e := range pool.selector {
		if v, ok := nodeSelector[e.key]; ok && v == e.value {
			continue
		}
		pinned := false
		for _, r := range reqs {
			if r.Key == e.key && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 && r.Values[0] == e.value {
				pinned = true
				break
			}
		}
		if !pinned {
			return false
		}
	}
	return true
}

// place is step 6. Candidates the pod's own nodeSelector already selects (it lacks
// only their tolerations) are preferred to any priority: the author chose them.
func (p *planner) place(cands []int) {
	spec := &p.pod.Spec
	if len(spec.NodeSelector) > 0 {
		var selected []int
		for _, i := range cands {
			if impliesPool(spec.NodeSelector, nil, &p.c.pools[i]) {
				selected = append(selected, i)
			}
		}
		if len(selected) > 0 {
			cands = selected
		}
	}
	chosen := highestPriority(cands, p.c.pools)
	ch := &p.d.Changes
	names := make([]string, len(chosen))
	for k, i := range chosen {
		names[k] = p.c.pools[i].name
	}
	if len(chosen) == 1 {
		pool := &p.c.pools[chosen[0]]
		for _, e := range pool.selector {
			if _, ok := spec.NodeSelector[e.key]; ok {
				continue // equal: a different value would have excluded the pool
			}
			if ch.NodeSelector == nil {
				ch.NodeSelector = make(map[string]string, len(pool.selector))
			}
			ch.NodeSelector[e.key] = e.value
		}
	} else {
		ch.AffinityTerms = p.affinityFor(chosen)
	}
	// added indexes the exact tolerations added so far once there are many, so that
	// hundreds of chosen pools stay linear; a few are checked by the scheduler's rules.
	var added map[taintKey]struct{}
	for _, i := range chosen {
		pool := &p.c.pools[i]
		for ti := range pool.taints {
			t := &pool.taints[ti]
			if schedcorev1.TolerationsTolerateTaint(noLog, spec.Tolerations, t, true) {
				continue
			}
			k := taintKey{t.Key, t.Value, t.Effect}
			if added != nil {
				if _, ok := added[k]; ok {
					continue
				}
				added[k] = struct{}{}
			} else if schedcorev1.TolerationsTolerateTaint(noLog, ch.Tolerations, t, true) {
				continue
			} else if len(ch.Tolerations) >= 8 {
				added = make(map[taintKey]struct{}, len(chosen))
				for _, x := range ch.Tolerations {
					added[taintKey{x.Key, x.Value, x.Effect}] = struct{}{}
				}
				added[k] = struct{}{}
			}
			ch.Tolerations = append(ch.Tolerations, exactToleration(t))
		}
	}
	p.d.Audit.Pools = names
	p.d.Audit.NodeSelector = ch.NodeSelector
	p.d.Audit.AffinityTerms = ch.AffinityTerms
	p.d.Audit.Tolerations = ch.Tolerations

	var sb strings.Builder
	sb.WriteString(string(VerdictPlaced) + " on " + describePools(names, listShort(names, 45)) + " for ")
	var placedBuf [8]string
	placed := p.toPlace(placedBuf[:0])
	sb.WriteString(listShort(placed, maxWarningLen-len(WarningPrefix)-sb.Len()))
	p.warn(sb.String())
}

// taintKey identifies an exact toleration added for a taint.
type taintKey struct {
	key, value string
	effect     corev1.TaintEffect
}

// highestPriority keeps the candidates with the highest priority, in config order.
func highestPriority(cands []int, pools []compiledPool) []int {
	top := pools[cands[0]].pool.Priority
	for _, i := range cands[1:] {
		if pr := pools[i].pool.Priority; pr > top {
			top = pr
		}
	}
	out := cands[:0:0]
	for _, i := range cands {
		if pools[i].pool.Priority == top {
			out = append(out, i)
		}
	}
	return out
}

// affinityFor builds the requirement that admits exactly the chosen pools' nodes:
// key In [v1 v2 ...] when they are all selected by one label key, otherwise one term
// per pool pinning each of its selector labels.
func (p *planner) affinityFor(chosen []int) []corev1.NodeSelectorTerm {
	pools := p.c.pools
	key := ""
	singleKey := true
	for _, i := range chosen {
		sel := pools[i].selector
		if len(sel) != 1 || (key != "" && sel[0].key != key) {
			singleKey = false
			break
		}
		key = sel[0].key
	}
	if singleKey {
		values := make([]string, len(chosen))
		for k, i := range chosen {
			values[k] = pools[i].selector[0].value
		}
		slices.Sort(values)
		return []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: key, Operator: corev1.NodeSelectorOpIn, Values: values,
		}}}}
	}
	terms := make([]corev1.NodeSelectorTerm, len(chosen))
	for k, i := range chosen {
		sel := pools[i].selector
		reqs := make([]corev1.NodeSelectorRequirement, len(sel))
		for j, e := range sel {
			reqs[j] = corev1.NodeSelectorRequirement{Key: e.key, Operator: corev1.NodeSelectorOpIn, Values: []string{e.value}}
		}
		terms[k].MatchExpressions = reqs
	}
	return terms
}
