package scheduling

// Step 5: unplaceable. No pool can run the pod: under policy deny the validating webhook
// rejects it with a message naming the sysctls and, per pool, every reason the pool was
// excluded; under warn it is admitted unchanged with a warning. Lists of sysctls are
// cut to a budget and name each sysctl once, so the message does not grow with the
// number of sysctls times the number of pools.

import (
	"strconv"
	"strings"

	"k8s.io/component-helpers/node/util/sysctl"
)

// maxExplainedPools bounds the per-pool part of a denial message; with hundreds of
// pools the message would otherwise exceed what an API error comfortably carries.
const maxExplainedPools = 20

// Budgets, in bytes, of the lists of sysctls in a denial message: the sysctls no pool
// can run, those no kubelet can allow, and those one pool refuses. Whole lists could
// be MaxSysctls names of MaxSysctlNameLength each, per pool; cut, they end with
// "and N more" and the message stays within MaxMessageLength.
const (
	wantedListBudget    = 1024
	notNamespacedBudget = 512
	poolListBudget      = 160
)

// unplaceable is step 5: explain, per sysctl and per pool, why nothing fits.
func (p *planner) unplaceable(policy UnplaceablePolicy) Decision {
	wanted := distinct(p.toPlace(nil))
	if policy == UnplaceableWarn {
		p.warn("no pool allows " + listShort(wanted, 50) + "; admitted without placement (policy warn)")
		return p.finish(OutcomeUnplaceable, ReasonUnplaceable)
	}
	var sb strings.Builder
	sb.WriteString("unplaceable sysctls: no node pool can run ")
	sb.WriteString(listShort(wanted, wantedListBudget))
	var unknown []string
	for _, s := range p.sysctls {
		if !s.dropped && s.ns == sysctl.UnknownNamespace {
			unknown = append(unknown, s.written)
		}
	}
	switch unknown = distinct(unknown); len(unknown) {
	case 0:
	case 1:
		sb.WriteString("; ")
		sb.WriteString(unknown[0])
		sb.WriteString(" is not a namespaced sysctl; no kubelet can allow it")
	default:
		sb.WriteString("; ")
		sb.WriteString(listShort(unknown, notNamespacedBudget))
		sb.WriteString(" are not namespaced sysctls; no kubelet can allow them")
	}
	if len(p.c.pools) == 0 {
		sb.WriteString("; no node pools are configured")
	}
	if p.affinityMatchesNothing {
		sb.WriteString("; the pod's required node affinity has no non-empty nodeSelectorTerm, so it matches no node")
	}
	for i := range p.c.pools {
		if i == maxExplainedPools {
			sb.WriteString("; and ")
			sb.WriteString(strconv.Itoa(len(p.c.pools) - i))
			sb.WriteString(" more pools")
			break
		}
		p.explain(&sb, &p.c.pools[i])
	}
	p.d.Message = sb.String()
	p.d.Allowed = false
	return p.finish(OutcomeUnplaceable, ReasonUnplaceable)
}

// explain appends every reason pool is not a candidate.
func (p *planner) explain(sb *strings.Builder, pool *compiledPool) {
	ex := p.exclusions(pool)
	start := func() {
		sb.WriteString("; pool ")
		sb.WriteString(pool.name)
		sb.WriteString(": ")
	}
	if ex&excludedByAnnotation != 0 {
		start()
		sb.WriteString("not listed in namespace annotation " + AnnotationPools)
	}
	if ex&excludedByNamespaceSelector != 0 {
		start()
		sb.WriteString("not available to namespace ")
		sb.WriteString(p.in.Namespace.Name)
	}
	if ex&excludedByNodeSelector != 0 {
		key, _ := p.selectorConflict(pool)
		start()
		sb.WriteString("conflict: pod nodeSelector ")
		sb.WriteString(key + "=" + p.pod.Spec.NodeSelector[key])
		sb.WriteString(" conflicts with pool selector ")
		sb.WriteString(pool.selectorString)
	}
	if ex&excludedByAffinity != 0 {
		start()
		sb.WriteString("pod required node affinity excludes pool selector ")
		sb.WriteString(pool.selectorString)
	}
	if ex&excludedByTolerationsWhitelist != 0 {
		t, _ := p.taintOutsideWhitelist(pool)
		start()
		sb.WriteString(p.explainWhitelist(t))
	}
	if ex&excludedBySysctls != 0 {
		var refused []string
		for i := range p.sysctls {
			if refuses(pool, &p.sysctls[i]) {
				refused = append(refused, p.sysctls[i].written)
			}
		}
		start()
		sb.WriteString("does not allow ")
		sb.WriteString(listShort(distinct(refused), poolListBudget))
	}
}
