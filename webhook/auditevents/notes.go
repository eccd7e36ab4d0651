package auditevents

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook"
)

// Reasons of the Events this package records. They are stable: users and alerts key
// on them.
const (
	// ReasonSysctlPlaced (Normal, on a Pod): the pod was placed on pools that allow its sysctls.
	ReasonSysctlPlaced = "SysctlPlaced"
	// ReasonHostNamespaceStripped (Warning, on a Pod or workload): a host namespace was turned off.
	ReasonHostNamespaceStripped = "HostNamespaceStripped"
	// ReasonSysctlsDropped (Warning, on a Pod or workload): clashing sysctls were removed.
	ReasonSysctlsDropped = "SysctlsDropped"
	// ReasonHostNamespaceConflict (Warning, on a Pod or workload): a clash was flagged
	// and left as it is, or a pod was denied for it.
	ReasonHostNamespaceConflict = "HostNamespaceConflict"
	// ReasonSysctlUnplaceable (Warning, on a workload): a pod of it was denied because no
	// pool allows its sysctls.
	ReasonSysctlUnplaceable = "SysctlUnplaceable"
	// ReasonSysctlForbiddenByPodSecurity (Warning, on a workload): a pod of it was
	// denied because its namespace's enforced Pod Security level forbids its sysctls.
	ReasonSysctlForbiddenByPodSecurity = "SysctlForbiddenByPodSecurity"
)

// MaxNoteLength is the API server's limit on an Event's note, in bytes.
const MaxNoteLength = 1024

// Entry is one Event to record, before it is tied to an object.
type Entry struct {
	// Type is corev1.EventTypeNormal or corev1.EventTypeWarning.
	Type string
	// Reason is one of the Reason* constants.
	Reason string
	// Action is what sysctl-placement did ("Place", "StripHostNamespace", ...).
	Action string
	// Note explains it, at most MaxNoteLength bytes.
	Note string
}

// ForPod returns the Events a placed pod gets from its audit record, at most one per
// reason. sysctls are the pod's sysctl names (after any were dropped), used to say
// why the pools were chosen; nil leaves them out.
func ForPod(a scheduling.Audit, sysctls []string) []Entry {
	var out []Entry
	if len(a.Pools) > 0 {
		out = append(out, Entry{Type: corev1.EventTypeNormal, Reason: ReasonSysctlPlaced, Action: "Place", Note: placedNote(a, sysctls)})
	}
	return append(out, clashEntries(a, "")...)
}

// ForTemplate returns the Events a workload gets when its pod template was changed.
func ForTemplate(a scheduling.Audit) []Entry {
	return clashEntries(a, "pod template: ")
}

// ForDenial returns the Event a workload gets when one of its pods was denied.
func ForDenial(d webhook.DeniedPod) Entry {
	reason := ReasonSysctlUnplaceable
	switch d.Outcome {
	case scheduling.OutcomeConflict:
		reason = ReasonHostNamespaceConflict
	case scheduling.OutcomeForbidden:
		reason = ReasonSysctlForbiddenByPodSecurity
	}
	pod := d.PodName
	if pod == "" {
		pod = "of " + d.Owner.Kind + " " + d.Owner.Name
	}
	return Entry{
		Type:   corev1.EventTypeWarning,
		Reason: reason,
		Action: "Deny",
		Note:   truncateNote("sysctl-placement denied pod " + pod + ": " + d.Message),
	}
}

// clashEntries turns host-namespace changes into one Event per reason.
func clashEntries(a scheduling.Audit, prefix string) []Entry {
	var stripped, dropped, flagged []string
	for _, c := range a.HostNamespaces {
		switch c.Mode {
		case scheduling.ClashStrip:
			stripped = append(stripped, fmt.Sprintf("set %s: false because sysctls %s need the pod's own %s namespace (policy %s)",
				c.Field, strings.Join(c.Sysctls, ", "), kernelNamespace(c.Field), c.Mode))
		case scheduling.ClashDropSysctls:
			dropped = append(dropped, fmt.Sprintf("removed sysctls %s: they cannot be set with %s, which is kept (policy %s)",
				strings.Join(c.Sysctls, ", "), hostSetting(c.Field), c.Mode))
		}
	}
	for _, c := range a.Flagged {
		flagged = append(flagged, fmt.Sprintf("%s with sysctls %s changed nothing (policy %s): the API server or the kubelet rejects this pod; set %s: false or remove the sysctls",
			hostSetting(c.Field), strings.Join(c.Sysctls, ", "), c.Mode, c.Field))
	}
	var out []Entry
	add := func(reason, action string, parts []string) {
		if len(parts) > 0 {
			out = append(out, Entry{Type: corev1.EventTypeWarning, Reason: reason, Action: action, Note: truncateNote(prefix + strings.Join(parts, "; "))})
		}
	}
	add(ReasonHostNamespaceStripped, "StripHostNamespace", stripped)
	add(ReasonSysctlsDropped, "DropSysctls", dropped)
	add(ReasonHostNamespaceConflict, "Flag", flagged)
	return out
}

// placedNote says where the pod was placed, why, and what was added to it.
func placedNote(a scheduling.Audit, sysctls []string) string {
	var b strings.Builder
	pools, whose := "pool "+a.Pools[0], "its kubelets allow"
	if len(a.Pools) > 1 {
		pools, whose = "pools "+strings.Join(a.Pools, ", "), "their kubelets allow"
	}
	b.WriteString("placed on " + pools)
	if len(sysctls) > 0 {
		b.WriteString(" because " + whose + " sysctls " + strings.Join(sysctls, ", "))
	} else {
		b.WriteString(" because " + whose + " the pod's sysctls")
	}
	var added []string
	if len(a.NodeSelector) > 0 {
		added = append(added, "nodeSelector "+labels.FormatLabels(a.NodeSelector))
	}
	if len(a.AffinityTerms) > 0 {
		added = append(added, "required node affinity "+formatTerms(a.AffinityTerms)+" (ANDed into existing terms)")
	}
	if len(a.Tolerations) > 0 {
		t := make([]string, 0, len(a.Tolerations))
		for _, tol := range a.Tolerations {
			t = append(t, formatToleration(tol))
		}
		added = append(added, "tolerations "+strings.Join(t, ", "))
	}
	if len(added) > 0 {
		b.WriteString("; added " + strings.Join(added, "; "))
	}
	return truncateNote(b.String())
}

// kernelNamespace names the kernel namespace of a host-namespace field in prose.
func kernelNamespace(field string) string {
	if h, ok := scheduling.HostNamespaceByField(field); ok {
		return h.Kernel
	}
	return field
}

// hostSetting names the host setting in force for a host-namespace field.
func hostSetting(field string) string {
	if h, ok := scheduling.HostNamespaceByField(field); ok {
		return h.Setting
	}
	return field + ": true"
}

func formatTerms(terms []corev1.NodeSelectorTerm) string {
	out := make([]string, 0, len(terms))
	for _, t := range terms {
		var reqs []string
		for _, r := range t.MatchExpressions {
			reqs = append(reqs, formatRequirement(r))
		}
		for _, r := range t.MatchFields {
			reqs = append(reqs, "field "+formatRequirement(r))
		}
		out = append(out, "("+strings.Join(reqs, " AND ")+")")
	}
	return strings.Join(out, " OR ")
}

func formatRequirement(r corev1.NodeSelectorRequirement) string {
	if len(r.Values) == 0 {
		return r.Key + " " + string(r.Operator)
	}
	return r.Key + " " + string(r.Operator) + " [" + strings.Join(r.Values, " ") + "]"
}

func formatToleration(t corev1.Toleration) string {
	s := t.Key
	if t.Operator == corev1.TolerationOpExists {
		s += " Exists"
	} else if t.Value != "" {
		s += "=" + t.Value
	}
	if t.Effect != "" {
		s += ":" + string(t.Effect)
	}
	return s
}

// truncateNote cuts s to MaxNoteLength bytes on a character boundary.
func truncateNote(s string) string {
	return scheduling.Truncate(s, MaxNoteLength)
}
