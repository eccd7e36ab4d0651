package auditevents

// Admitted: is a pod labelled placed one the webhook changed? Anyone who may create a
// pod may also set sysctl-placement.io/placed and a placement annotation of their own.
// A pod is taken as ours only when the annotation is no larger than any the webhook
// writes, parses, describes a change (the webhook writes it only with one) and the
// pod's spec carries every change it describes. What a forger can still get is an
// Event, in their own namespace and paid from its budget, that truthfully describes
// their own pod's placement fields.

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// MaxPlacementAnnotationBytes bounds the placement annotation the audit controller
// reads. The webhook's own is far smaller (the admission path bounds the sysctls and
// messages it records); a larger one is a forgery and is neither kept nor parsed.
const MaxPlacementAnnotationBytes = 64 << 10

var (
	errNoAudit    = errors.New("no " + scheduling.AnnotationPlacement + " annotation")
	errNoChange   = errors.New("the audit record describes no change")
	errNotCarried = errors.New("the pod does not carry the changes its audit record describes")
)

// admittedAudit returns the audit record of a pod the webhook placed, or why the pod
// is not one: errNotCarried and errNoChange mean a forgery, anything else an
// annotation that does not parse.
func admittedAudit(pod *corev1.Pod) (scheduling.Audit, error) {
	var a scheduling.Audit
	raw, ok := pod.Annotations[scheduling.AnnotationPlacement]
	if !ok {
		return a, errNoAudit
	}
	if len(raw) > MaxPlacementAnnotationBytes {
		return a, fmt.Errorf("the annotation has %d bytes, more than %d", len(raw), MaxPlacementAnnotationBytes)
	}
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return a, fmt.Errorf("the annotation is not an audit record: %w", err)
	}
	if !describesChange(a) {
		return a, errNoChange
	}
	if !carries(&pod.Spec, a) {
		return a, errNotCarried
	}
	return a, nil
}

// describesChange reports whether a records something the webhook changed: it writes
// the annotation only together with a change to the spec.
func describesChange(a scheduling.Audit) bool {
	for _, c := range a.HostNamespaces {
		if c.Mode == scheduling.ClashStrip {
			return true
		}
	}
	return len(a.NodeSelector) > 0 || len(a.AffinityTerms) > 0 || len(a.Tolerations) > 0 || len(a.DroppedSysctls) > 0
}

// carries reports whether spec holds every change a records, as scheduling.ApplyTo
// makes them: nodeSelector entries, tolerations, the affinity terms ANDed into every
// required term, stripped host namespaces off, dropped sysctls gone.
func carries(spec *corev1.PodSpec, a scheduling.Audit) bool {
	for k, v := range a.NodeSelector {
		if got, ok := spec.NodeSelector[k]; !ok || got != v {
			return false
		}
	}
	for _, want := range a.Tolerations {
		if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return apiequality.Semantic.DeepEqual(t, want) }) {
			return false
		}
	}
	if len(a.AffinityTerms) > 0 && !carriesTerms(spec, a.AffinityTerms) {
		return false
	}
	for _, c := range a.HostNamespaces {
		h, ok := scheduling.HostNamespaceByField(c.Field)
		if c.Mode == scheduling.ClashStrip && (!ok || h.Shared(spec)) {
			return false
		}
	}
	if len(a.DroppedSysctls) > 0 && spec.SecurityContext != nil {
		for _, s := range spec.SecurityContext.Sysctls {
			if slices.Contains(a.DroppedSysctls, s.Name) {
				return false
			}
		}
	}
	return true
}

// carriesTerms reports whether every required nodeSelectorTerm of spec contains all
// requirements of one of added: what ANDing added into the existing terms leaves
// (an empty existing term, which selects no node, is kept as it is).
func carriesTerms(spec *corev1.PodSpec, added []corev1.NodeSelectorTerm) bool {
	na := spec.Affinity
	if na == nil || na.NodeAffinity == nil || na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	carried := false
	for _, term := range na.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue
		}
		carried = true
		if !slices.ContainsFunc(added, func(a corev1.NodeSelectorTerm) bool {
			return containsAll(term.MatchExpressions, a.MatchExpressions) && containsAll(term.MatchFields, a.MatchFields)
		}) {
			return false
		}
	}
	return carried
}

func containsAll(have, want []corev1.NodeSelectorRequirement) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h corev1.NodeSelectorRequirement) bool { return apiequality.Semantic.DeepEqual(h, w) }) {
			return false
		}
	}
	return true
}
