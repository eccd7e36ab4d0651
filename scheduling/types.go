// Package scheduling decides where a pod that asks for sysctls may run and how its
// host-namespace settings clash with those sysctls. It is pure: it imports only
// k8s.io/api, k8s.io/apimachinery and k8s.io/component-helpers, and it never does I/O.
//
// The one entry point is Plan. Everything the webhook, the plan command and the tests do
// goes through it, so the offline answer and the admission answer are the same.
package scheduling

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotation and label keys the project reads and writes.
const (
	// AnnotationPrefix is the prefix of every namespace and pod annotation we read.
	AnnotationPrefix = "sysctl-placement.io/"
	// AnnotationEnabled on a namespace opts it in when set to "true".
	AnnotationEnabled = AnnotationPrefix + "enabled"
	// LabelEnabled on a namespace opts it in too. The shipped webhook configurations
	// select namespaces by this label, so the API server only calls the webhook for
	// namespaces that opted in, and a webhook outage cannot affect any other.
	LabelEnabled = AnnotationEnabled
	// AnnotationHostIPC on a namespace overrides policy.hostIPC.
	AnnotationHostIPC = AnnotationPrefix + "host-ipc"
	// AnnotationHostNetwork on a namespace overrides policy.hostNetwork.
	AnnotationHostNetwork = AnnotationPrefix + "host-network"
	// AnnotationHostUsers on a namespace overrides policy.hostUsers.
	AnnotationHostUsers = AnnotationPrefix + "host-users"
	// AnnotationUnplaceable on a namespace overrides policy.unplaceable.
	AnnotationUnplaceable = AnnotationPrefix + "unplaceable"
	// AnnotationPools on a namespace restricts the pools its pods may use ("a,b").
	AnnotationPools = AnnotationPrefix + "pools"
	// AnnotationSkip on a pod set to "true" opts that one pod out.
	AnnotationSkip = AnnotationPrefix + "skip"
	// AnnotationPlacement on a pod holds the audit record (JSON) of what was changed.
	AnnotationPlacement = AnnotationPrefix + "placement"
	// LabelPlaced marks pods the webhook changed, so a controller can watch only those.
	LabelPlaced = AnnotationPrefix + "placed"
)

// UnplaceablePolicy says what happens to a pod no pool can run.
type UnplaceablePolicy string

const (
	// UnplaceableDeny makes the validating webhook reject the pod with an explanation.
	UnplaceableDeny UnplaceablePolicy = "deny"
	// UnplaceableWarn admits the pod unchanged with a warning.
	UnplaceableWarn UnplaceablePolicy = "warn"
)

// UnplaceablePolicies are every UnplaceablePolicy; Compile and the annotation check
// refuse any other value.
var UnplaceablePolicies = []UnplaceablePolicy{UnplaceableDeny, UnplaceableWarn}

// Valid reports whether u is one of UnplaceablePolicies.
func (u UnplaceablePolicy) Valid() bool { return slices.Contains(UnplaceablePolicies, u) }

// PlacementConfig is the admin-owned configuration file
// (apiVersion sysctl-placement.io/v1alpha1, kind PlacementConfig).
type PlacementConfig struct {
	metav1.TypeMeta `json:",inline"`
	Pools           []Pool     `json:"pools,omitempty"`
	Policy          Policy     `json:"policy,omitempty"`
	Discovery       *Discovery `json:"discovery,omitempty"`
}

// Pool is a set of nodes picked by a label selector, with what their kubelets allow.
type Pool struct {
	Name                 string            `json:"name"`
	NodeSelector         map[string]string `json:"nodeSelector"`
	Taints               []corev1.Taint    `json:"taints,omitempty"`
	AllowedUnsafeSysctls []string          `json:"allowedUnsafeSysctls,omitempty"`
	// KubeletVersion and KernelVersion decide which built-in safe sysctls the kubelet
	// allows. Empty means the newest kubelet on a modern kernel; with discovery, an
	// empty KubeletVersion is filled from the Nodes (discovery.Merge), so the newest is
	// the newest the cluster runs.
	KubeletVersion string `json:"kubeletVersion,omitempty"`
	KernelVersion  string `json:"kernelVersion,omitempty"`
	// Priority breaks ties: among candidates, only those with the highest priority are used.
	Priority int32 `json:"priority,omitempty"`
	// NamespaceSelector limits which namespaces (by label) may use this pool. Empty: all.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// Policy holds the cluster-wide defaults; namespace annotations may override them.
type Policy struct {
	HostIPC     ClashMode         `json:"hostIPC,omitempty"`
	HostNetwork ClashMode         `json:"hostNetwork,omitempty"`
	HostUsers   ClashMode         `json:"hostUsers,omitempty"`
	Unplaceable UnplaceablePolicy `json:"unplaceable,omitempty"`
}

// Discovery configures reading pools from live Nodes.
type Discovery struct {
	PoolLabel     string `json:"poolLabel"`
	AllowlistFrom string `json:"allowlistFrom,omitempty"`
	// Pools restrict discovered pools by name or pattern: a dedicated pool found on the
	// Nodes is otherwise open to every opted-in namespace, and opting in is self-service.
	Pools []DiscoveredPool `json:"pools,omitempty"`
	// OnlyListedPools makes discovered pools opt-in: only those an entry of Pools
	// matches are used; the others are shown (`pools`, `audit`) but never placed on.
	OnlyListedPools bool `json:"onlyListedPools,omitempty"`
}

// DiscoveredPool restricts the discovered pools its Name matches.
type DiscoveredPool struct {
	// Name is a pool name or a shell pattern over pool names (path.Match: "gpu-*"); the
	// first entry that matches a pool applies to it, so list exact names first.
	Name string `json:"name"`
	// NamespaceSelector limits which namespaces (by label) may use the matched pools,
	// exactly as a config pool's namespaceSelector does. Empty: all.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// Namespace is what Plan needs to know of the pod's namespace: its labels (for pool
// namespaceSelectors) and its sysctl-placement.io/* annotations.
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// OptedIn reports whether the namespace opted in (annotation or label
// sysctl-placement.io/enabled: "true").
func (ns Namespace) OptedIn() bool {
	return ns.Annotations[AnnotationEnabled] == "true" || ns.Labels[LabelEnabled] == "true"
}

// Input is everything Plan decides from.
type Input struct {
	// Pod is the pod (or, for workloads, a pod built from the template's metadata and
	// spec). Plan never modifies it.
	Pod       *corev1.Pod
	Namespace Namespace
	// Config holds the pools and the policy; it must have passed Validate (Compile).
	Config *Compiled
	// Template is true for workload pod templates: only host-namespace clashes are
	// resolved, nothing is placed.
	Template bool
}

// Outcome is the short answer of a Decision.
type Outcome string

const (
	// OutcomeSkipped: nothing to do (namespace not opted in, skip annotation, no
	// sysctls, nodeName set). Reason says which.
	OutcomeSkipped Outcome = "Skipped"
	// OutcomeUnchanged: planned, nothing to change (already placed, safe-only sysctls,
	// template without clashes).
	OutcomeUnchanged Outcome = "Unchanged"
	// OutcomeChanged: Changes holds what to apply.
	OutcomeChanged Outcome = "Changed"
	// OutcomeUnplaceable: no pool can run the pod. Allowed says whether policy lets it in.
	OutcomeUnplaceable Outcome = "Unplaceable"
	// OutcomeConflict: a flagged clash that must be denied (User namespace under flag).
	OutcomeConflict Outcome = "Conflict"
	// OutcomeForbidden: the namespace's enforced Pod Security level forbids a remaining
	// sysctl and the unplaceable policy is deny; the pod is denied (Allowed false)
	// before anything is placed, since the API server would refuse it anyway.
	OutcomeForbidden Outcome = "Forbidden"
	// OutcomeOverLimit: the pod sets more than MaxSysctls sysctls or a name longer
	// than MaxSysctlNameLength (Reason says which); it is denied (Allowed false) by
	// both webhooks before anything is planned.
	OutcomeOverLimit Outcome = "OverLimit"
)

// Decision is the result of Plan.
type Decision struct {
	Outcome Outcome
	// Reason is a short machine-friendly reason (e.g. "NamespaceNotEnabled", "NoSysctls").
	Reason string
	// Allowed is false only when the validating webhook must reject the pod.
	Allowed bool
	// Message explains a denial: the sysctls, and per pool why it was excluded; at most
	// MaxMessageLength bytes, lists of sysctls cut short.
	Message string
	// Warnings are short user-facing lines (≤120 characters, prefixed "sysctl-placement: "),
	// at most eleven: ten and one counting the rest.
	Warnings []string
	// Changes is what the mutating webhook applies (empty unless Outcome is Changed,
	// though clash resolutions may be present together with Unplaceable).
	Changes Changes
	// Audit is the record written to the pod annotation and the Events.
	Audit Audit
}

// Changes lists only additions and the host-namespace flips; Plan never removes or
// rewrites a user's selector, affinity or toleration.
type Changes struct {
	// NodeSelector entries to add to spec.nodeSelector.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// AffinityTerms, when set, must be ANDed into the pod's required node affinity: the
	// result is the cross product of the existing terms and these terms (each pair
	// merged), or these terms when the pod has none. Usually a single term.
	AffinityTerms []corev1.NodeSelectorTerm `json:"affinityTerms,omitempty"`
	// Tolerations to append to spec.tolerations.
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// HostIPC, HostNetwork, HostUsers: non-nil means set the field to this value.
	HostIPC     *bool `json:"hostIPC,omitempty"`
	HostNetwork *bool `json:"hostNetwork,omitempty"`
	HostUsers   *bool `json:"hostUsers,omitempty"`
	// DroppedSysctls are removed from spec.securityContext.sysctls (names as written).
	DroppedSysctls []string `json:"droppedSysctls,omitempty"`
}

// IsEmpty reports whether applying the changes would change nothing; the webhook
// sends no patch then.
func (c Changes) IsEmpty() bool {
	return len(c.NodeSelector) == 0 && len(c.AffinityTerms) == 0 && len(c.Tolerations) == 0 &&
		c.HostIPC == nil && c.HostNetwork == nil && c.HostUsers == nil && len(c.DroppedSysctls) == 0
}

// Audit is the JSON record in the sysctl-placement.io/placement annotation.
type Audit struct {
	Pools          []string                  `json:"pools,omitempty"`
	NodeSelector   map[string]string         `json:"nodeSelector,omitempty"`
	AffinityTerms  []corev1.NodeSelectorTerm `json:"affinityTerms,omitempty"`
	Tolerations    []corev1.Toleration       `json:"tolerations,omitempty"`
	HostNamespaces []HostNamespaceChange     `json:"hostNamespaces,omitempty"`
	DroppedSysctls []string                  `json:"droppedSysctls,omitempty"`
	Flagged        []HostNamespaceChange     `json:"flagged,omitempty"`
	Reason         string                    `json:"reason,omitempty"`
	// PodSecurity lists the namespace's Pod Security modes whose level forbids some
	// of the remaining sysctls (enforce first).
	PodSecurity []PodSecurityFinding `json:"podSecurity,omitempty"`
	// OmittedSysctls counts the sysctl names left out of the lists above to keep the
	// annotation small (see boundAudit); zero for any real pod.
	OmittedSysctls int `json:"omittedSysctls,omitempty"`
}

// HostNamespaceChange records one clash and how it was resolved.
type HostNamespaceChange struct {
	// Field is "hostIPC", "hostNetwork" or "hostUsers".
	Field string `json:"field"`
	// Mode is the clash mode that applied.
	Mode ClashMode `json:"mode"`
	// Sysctls are the clashing sysctls.
	Sysctls []string `json:"sysctls"`
	// PodSecurity notes how the resolution meets the namespace's Pod Security level,
	// which forbids host namespaces too (baseline, restricted); empty when it does not.
	PodSecurity string `json:"podSecurity,omitempty"`
}

// Reasons, in Decision.Reason and Audit.Reason. They are stable strings: dashboards and
// Events key on them.
const (
	// ReasonNoPod: the input had no pod (a caller bug, never a user's).
	ReasonNoPod = "NoPod"
	// ReasonNoConfig: the input had no compiled configuration.
	ReasonNoConfig = "NoConfig"
	// ReasonNamespaceNotEnabled: the namespace lacks sysctl-placement.io/enabled: "true".
	ReasonNamespaceNotEnabled = "NamespaceNotEnabled"
	// ReasonPodOptedOut: the pod carries sysctl-placement.io/skip: "true".
	ReasonPodOptedOut = "PodOptedOut"
	// ReasonNoSysctls: the pod asks for no sysctls.
	ReasonNoSysctls = "NoSysctls"
	// ReasonNodeNameSet: spec.nodeName is set (static or mirror pod, or bound by hand).
	ReasonNodeNameSet = "NodeNameSet"
	// ReasonTemplate: a workload template; only host-namespace clashes were resolved.
	ReasonTemplate = "Template"
	// ReasonHostUsersConflict: a User-namespace sysctl in the host user namespace,
	// flagged, so the pod is denied.
	ReasonHostUsersConflict = "HostUsersConflict"
	// ReasonAllSysctlsDropped: every sysctl was dropped by drop-sysctls; nothing to place.
	ReasonAllSysctlsDropped = "AllSysctlsDropped"
	// ReasonSafeSysctlsOnly: the remaining sysctls are allowed on every node.
	ReasonSafeSysctlsOnly = "SafeSysctlsOnly"
	// ReasonAlreadyPlaced: the pod's own constraints already keep it on allowing pools.
	ReasonAlreadyPlaced = "AlreadyPlaced"
	// ReasonUnplaceable: no pool can run the pod.
	ReasonUnplaceable = "Unplaceable"
	// ReasonPlaced: Changes place the pod on allowing pools.
	ReasonPlaced = "Placed"
)
