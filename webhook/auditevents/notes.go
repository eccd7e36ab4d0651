package auditevents

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

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
			dropped = append(dropped, fmt.Sprintf("dropped sysctls %s: they cannot be set with %s, which is kept (policy %s)",
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

// placedNote says where the pod was placed, why, and what was added to it, in the
// words of scheduling's descriptions.
func placedNote(a scheduling.Audit, sysctls []string) string {
	whose := "its kubelets allow"
	if len(a.Pools) > 1 {
		whose = "their kubelets allow"
	}
	note := string(scheduling.VerdictPlaced) + " on " + scheduling.DescribePools(a.Pools) + " because " + whose
	if len(sysctls) > 0 {
		note += " sysctls " + strings.Join(sysctls, ", ")
	} else {
		note += " the pod's sysctls"
	}
	added := scheduling.Changes{NodeSelector: a.NodeSelector, AffinityTerms: a.AffinityTerms, Tolerations: a.Tolerations}
	if !added.IsEmpty() {
		note += "; added " + added.String()
	}
	return truncateNote(note)
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

// truncateNote cuts s to MaxNoteLength bytes on a character boundary.
func truncateNote(s string) string {
	return scheduling.Truncate(s, MaxNoteLength)
}
