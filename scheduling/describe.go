package scheduling

// Describing a decision: the one set of words for what Plan decided and what it adds,
// read by the plan and audit commands, the warnings, the Events and the tests alike,
// so a pod is never "placed" in one place, "place"d in another and "in (a,b)" in a
// third. The wording is held by TestDescribe's golden file.

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Verdict is what a Decision does to the pod, in a word or two.
type Verdict string

const (
	// VerdictPlaced: Changes put the pod on allowing pools (Audit.Pools names them).
	VerdictPlaced Verdict = "placed"
	// VerdictChanged: Changes only resolve host-namespace clashes.
	VerdictChanged Verdict = "changed"
	// VerdictUnchanged: planned, nothing to change; Reason says why (AlreadyPlaced,
	// SafeSysctlsOnly, ...).
	VerdictUnchanged Verdict = "unchanged"
	// VerdictSkipped: not planned at all; Reason says why.
	VerdictSkipped Verdict = "skipped"
	// VerdictDenied: the pod is refused; Message says why.
	VerdictDenied Verdict = "denied"
	// VerdictAdmittedUnplaceable: no pool can run the pod, and policy warn lets it in
	// unchanged.
	VerdictAdmittedUnplaceable Verdict = "admitted unplaceable"
)

// Verdict says what the decision does to the pod.
func (d Decision) Verdict() Verdict {
	switch {
	case !d.Allowed:
		return VerdictDenied
	case d.Outcome == OutcomeSkipped:
		return VerdictSkipped
	case d.Outcome == OutcomeUnplaceable:
		return VerdictAdmittedUnplaceable
	case d.Outcome == OutcomeChanged && len(d.Audit.Pools) > 0:
		return VerdictPlaced
	case d.Outcome == OutcomeChanged:
		return VerdictChanged
	default:
		return VerdictUnchanged
	}
}

// String is the decision in one line: its verdict, the pools or the reason, and what
// it adds ("placed on pool ipc: nodeSelector pool=ipc; tolerations dedicated=ipc:NoSchedule",
// "unchanged (AlreadyPlaced)").
func (d Decision) String() string {
	v := d.Verdict()
	s := string(v)
	switch {
	case v == VerdictPlaced:
		s += " on " + DescribePools(d.Audit.Pools)
	case d.Reason != "":
		s += " (" + d.Reason + ")"
	}
	if c := d.Changes.String(); c != "" {
		s += ": " + c
	}
	return s
}

// DescribePools names pools after "placed on": "pool a" or "pools a, b".
func DescribePools(names []string) string {
	return describePools(names, strings.Join(names, ", "))
}

// describePools is DescribePools with the list already written (or cut short).
func describePools(names []string, list string) string {
	if len(names) == 1 {
		return "pool " + list
	}
	return "pools " + list
}

// String says what applying the changes adds or turns off, in the words of the pod's
// fields, parts separated by "; ": "nodeSelector k=v", "required node affinity
// (k In [a b])", "tolerations k=v:NoSchedule", "set hostIPC: false", "dropped sysctls
// a, b". Empty when there is nothing to apply.
func (c Changes) String() string {
	var parts []string
	if len(c.NodeSelector) > 0 {
		parts = append(parts, "nodeSelector "+labels.FormatLabels(c.NodeSelector))
	}
	if len(c.AffinityTerms) > 0 {
		parts = append(parts, "required node affinity "+DescribeTerms(c.AffinityTerms))
	}
	if len(c.Tolerations) > 0 {
		t := make([]string, len(c.Tolerations))
		for i, tol := range c.Tolerations {
			t[i] = DescribeToleration(tol)
		}
		parts = append(parts, "tolerations "+strings.Join(t, ", "))
	}
	for _, h := range HostNamespaces {
		if v := *h.Change(&c); v != nil {
			parts = append(parts, fmt.Sprintf("set %s: %t", h.Field, *v))
		}
	}
	if len(c.DroppedSysctls) > 0 {
		parts = append(parts, "dropped sysctls "+strings.Join(c.DroppedSysctls, ", "))
	}
	return strings.Join(parts, "; ")
}

// DescribeTerms writes node-selector terms as the scheduler reads them: requirements
// of a term ANDed, terms ORed, "(k In [a b] AND field metadata.name In [n]) OR (...)".
func DescribeTerms(terms []corev1.NodeSelectorTerm) string {
	out := make([]string, len(terms))
	for i, t := range terms {
		reqs := make([]string, 0, len(t.MatchExpressions)+len(t.MatchFields))
		for _, r := range t.MatchExpressions {
			reqs = append(reqs, DescribeRequirement(r))
		}
		for _, r := range t.MatchFields {
			reqs = append(reqs, "field "+DescribeRequirement(r))
		}
		out[i] = "(" + strings.Join(reqs, " AND ") + ")"
	}
	return strings.Join(out, " OR ")
}

// DescribeRequirement writes one requirement: "k In [a b]", "k Exists".
func DescribeRequirement(r corev1.NodeSelectorRequirement) string {
	if len(r.Values) == 0 {
		return r.Key + " " + string(r.Operator)
	}
	return r.Key + " " + string(r.Operator) + " [" + strings.Join(r.Values, " ") + "]"
}

// DescribeToleration writes a toleration as a taint it matches: "k=v:NoSchedule" for
// Equal, "k Exists:NoSchedule" for Exists ("Exists" alone tolerates every taint), and
// " for 300s" when it bounds how long a NoExecute taint is tolerated.
func DescribeToleration(t corev1.Toleration) string {
	s := t.Key
	switch {
	case t.Operator == corev1.TolerationOpExists && s == "":
		s = "Exists"
	case t.Operator == corev1.TolerationOpExists:
		s += " Exists"
	case t.Value != "":
		s += "=" + t.Value
	}
	if t.Effect != "" {
		s += ":" + string(t.Effect)
	}
	if t.TolerationSeconds != nil {
		s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
	}
	return s
}
