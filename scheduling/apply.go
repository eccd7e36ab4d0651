package scheduling

// ApplyTo is the one definition of what a Decision's Changes mean on a typed PodSpec.
// The webhook turns the same Changes into JSON patches; tests, the fuzz target and the
// plan command use ApplyTo, so the meaning is tested in one place.

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
)

// ApplyTo applies ch to spec. It only adds: nodeSelector entries the spec lacks,
// tolerations, and the affinity requirements ANDed into every existing required
// nodeSelectorTerm (the cross product of the existing terms and ch.AffinityTerms,
// each pair merged). Appending a term instead would OR it and widen the pod's
// placement. Empty existing terms select no node and are kept as they are.
// Host-namespace flips and dropped sysctls are the only rewrites, and they come from
// the namespace's policy. Nothing in ch is aliased by spec afterwards.
func ApplyTo(spec *corev1.PodSpec, ch Changes) {
	if spec == nil {
		return
	}
	for k, v := range ch.NodeSelector {
		if spec.NodeSelector == nil {
			spec.NodeSelector = make(map[string]string, len(ch.NodeSelector))
		}
		if _, ok := spec.NodeSelector[k]; !ok {
			spec.NodeSelector[k] = v
		}
	}
	if len(ch.AffinityTerms) > 0 {
		andAffinity(spec, ch.AffinityTerms)
	}
	for _, t := range ch.Tolerations {
		spec.Tolerations = append(spec.Tolerations, *t.DeepCopy())
	}
	for i := range HostNamespaces {
		if v := *HostNamespaces[i].Change(&ch); v != nil {
			HostNamespaces[i].Set(spec, *v)
		}
	}
	if len(ch.DroppedSysctls) > 0 && spec.SecurityContext != nil {
		kept := spec.SecurityContext.Sysctls[:0:0]
		for _, s := range spec.SecurityContext.Sysctls {
			if !slices.Contains(ch.DroppedSysctls, s.Name) {
				kept = append(kept, s)
			}
		}
		spec.SecurityContext.Sysctls = kept
	}
}

// andAffinity ANDs terms into the spec's required node affinity.
func andAffinity(spec *corev1.PodSpec, terms []corev1.NodeSelectorTerm) {
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	req := na.RequiredDuringSchedulingIgnoredDuringExecution
	if len(req.NodeSelectorTerms) == 0 {
		for _, t := range terms {
			req.NodeSelectorTerms = append(req.NodeSelectorTerms, *t.DeepCopy())
		}
		return
	}
	req.NodeSelectorTerms = AndTerms(req.NodeSelectorTerms, terms)
}

// AndTerms returns existing AND terms, as required nodeSelectorTerms (which are ORed):
// the cross product, each pair merged, requirements already present not repeated.
// An empty existing term selects no node and is kept as it is, once; terms for
// every other existing term come in the order of existing, so with a single added
// term the result lines up index by index with existing (the webhook relies on this
// to patch each term in place).
func AndTerms(existing, terms []corev1.NodeSelectorTerm) []corev1.NodeSelectorTerm {
	merged := make([]corev1.NodeSelectorTerm, 0, len(existing)*len(terms))
	for _, e := range existing {
		if len(e.MatchExpressions) == 0 && len(e.MatchFields) == 0 {
			merged = append(merged, *e.DeepCopy())
			continue
		}
		for _, add := range terms {
			m := *e.DeepCopy()
			for _, r := range add.MatchExpressions {
				if !hasRequirement(m.MatchExpressions, r) {
					m.MatchExpressions = append(m.MatchExpressions, *r.DeepCopy())
				}
			}
			for _, r := range add.MatchFields {
				if !hasRequirement(m.MatchFields, r) {
					m.MatchFields = append(m.MatchFields, *r.DeepCopy())
				}
			}
			merged = append(merged, m)
		}
	}
	return merged
}

func hasRequirement(reqs []corev1.NodeSelectorRequirement, r corev1.NodeSelectorRequirement) bool {
	for _, x := range reqs {
		if apiequality.Semantic.DeepEqual(x, r) {
			return true
		}
	}
	return false
}
