package scheduling

// This file is the one table of the host namespaces a pod can share and of the modes
// that resolve their clashes with namespaced sysctls. The planner, config validation,
// the webhook's patch, the audit Event notes and the metric help read it; adding a
// namespace or a mode is a change here, in the config docs and in the tests.

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/node/util/sysctl"
)

// ClashMode says how a clash between a host namespace and namespaced sysctls is resolved.
type ClashMode string

const (
	// ClashStrip sets the host-namespace field to false.
	ClashStrip ClashMode = "strip"
	// ClashDropSysctls removes the clashing sysctls and keeps the host namespace.
	ClashDropSysctls ClashMode = "drop-sysctls"
	// ClashFlag changes nothing; it warns and audits (and, for User clashes, denies).
	ClashFlag ClashMode = "flag"
)

// ClashModes are every ClashMode, in the order messages list them. Compile refuses any
// other value and Plan ignores (with a warning) a namespace annotation naming another,
// so resolveClashes only ever sees these.
var ClashModes = []ClashMode{ClashStrip, ClashDropSysctls, ClashFlag}

// Valid reports whether m is one of ClashModes.
func (m ClashMode) Valid() bool { return slices.Contains(ClashModes, m) }

// ClashModeNames are the names of ClashModes, for help texts.
func ClashModeNames() []string {
	names := make([]string, len(ClashModes))
	for i, m := range ClashModes {
		names[i] = string(m)
	}
	return names
}

// clashModeChoices is "strip, drop-sysctls or flag", for messages.
func clashModeChoices() string {
	names := ClashModeNames()
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// HostNamespace is a host namespace a pod can share, with what the project knows of it.
type HostNamespace struct {
	// Field is the PodSpec field and the policy field ("hostIPC"); the webhook's patch
	// path is <spec>/<Field>, and messages name the setting by it.
	Field string
	// Sysctls is the kernel namespace whose sysctls clash with sharing the host's.
	Sysctls sysctl.Namespace
	// Kernel names that kernel namespace in prose: "IPC", "network", "user".
	Kernel string
	// Setting is how a message names the host setting in force: "hostIPC: true", or
	// "hostUsers unset or true" (hostUsers shares the host's by default).
	Setting string
	// DefaultMode is the policy's mode when the config leaves it empty.
	DefaultMode ClashMode
	// Annotation on a namespace overrides the policy's mode for its pods.
	Annotation string
	// Shared reports whether a spec shares the host's namespace.
	Shared func(*corev1.PodSpec) bool
	// Set makes a spec share the host's namespace (v) or not.
	Set func(spec *corev1.PodSpec, v bool)
	// Mode is the policy's mode for it.
	Mode func(*Policy) *ClashMode
	// Change is the field of Changes that flips it (non-nil: set the field to this).
	Change func(*Changes) **bool
	// PodSecurityForbids is true when Pod Security's baseline level (and so restricted)
	// forbids sharing it, at every version (policy/check_hostNamespaces.go).
	PodSecurityForbids bool
}

// HostNamespaces are the host namespaces that clash with namespaced sysctls, in the
// order Plan resolves them and patches are written.
var HostNamespaces = [...]HostNamespace{
	{
		Field: "hostIPC", Sysctls: sysctl.IPCNamespace, Kernel: "IPC", Setting: "hostIPC: true",
		// An IPC sysctl is the point of the pod; hostIPC is usually incidental.
		DefaultMode: ClashStrip, Annotation: AnnotationHostIPC,
		Shared: func(s *corev1.PodSpec) bool { return s.HostIPC },
		Set:    func(s *corev1.PodSpec, v bool) { s.HostIPC = v },
		Mode:   func(p *Policy) *ClashMode { return &p.HostIPC },
		Change: func(c *Changes) **bool { return &c.HostIPC },

		PodSecurityForbids: true,
	},
	{
		Field: "hostNetwork", Sysctls: sysctl.NetNamespace, Kernel: "network", Setting: "hostNetwork: true",
		// Stripping hostNetwork would change the pod's networking.
		DefaultMode: ClashFlag, Annotation: AnnotationHostNetwork,
		Shared: func(s *corev1.PodSpec) bool { return s.HostNetwork },
		Set:    func(s *corev1.PodSpec, v bool) { s.HostNetwork = v },
		Mode:   func(p *Policy) *ClashMode { return &p.HostNetwork },
		Change: func(c *Changes) **bool { return &c.HostNetwork },

		PodSecurityForbids: true,
	},
	{
		Field: "hostUsers", Sysctls: sysctl.UserNamespace, Kernel: "user", Setting: "hostUsers unset or true",
		DefaultMode: ClashFlag, Annotation: AnnotationHostUsers,
		Shared: func(s *corev1.PodSpec) bool { return s.HostUsers == nil || *s.HostUsers },
		Set:    func(s *corev1.PodSpec, v bool) { s.HostUsers = &v },
		Mode:   func(p *Policy) *ClashMode { return &p.HostUsers },
		Change: func(c *Changes) **bool { return &c.HostUsers },
	},
}

// HostNamespaceFields are the fields of HostNamespaces, for help texts.
func HostNamespaceFields() []string {
	fields := make([]string, len(HostNamespaces))
	for i, h := range HostNamespaces {
		fields[i] = h.Field
	}
	return fields
}

// HostNamespaceByField returns the entry of HostNamespaces for a field ("hostIPC").
func HostNamespaceByField(field string) (HostNamespace, bool) {
	for _, h := range HostNamespaces {
		if h.Field == field {
			return h, true
		}
	}
	return HostNamespace{}, false
}
