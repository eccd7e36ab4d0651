package scheduling

// Step 2: host-namespace clashes. A namespaced sysctl cannot be set in a pod that shares
// the host's namespace of that kind; the namespace's mode (see HostNamespaces and
// ClashModes) says whether the host field is stripped, the sysctls dropped, or the
// clash flagged. Workload templates get this step only.

import (
	"strconv"

	"k8s.io/component-helpers/node/util/sysctl"
)

// resolveClashes is step 2. It reports true when a flagged User clash must be denied.
func (p *planner) resolveClashes(m effectiveModes) (deny bool) {
	spec := &p.pod.Spec
	for i := range HostNamespaces {
		hc := &HostNamespaces[i]
		if !hc.Shared(spec) {
			continue
		}
		var names []string
		for _, s := range p.sysctls {
			if s.ns == hc.Sysctls && !s.dropped {
				names = append(names, s.written)
			}
		}
		if len(names) == 0 {
			continue
		}
		mode := m.clash[i]
		rec := HostNamespaceChange{Field: hc.Field, Mode: mode, Sysctls: names, PodSecurity: p.hostNamespaceNote(hc, mode)}
		if hc.Sysctls == sysctl.UserNamespace && mode == ClashStrip && (spec.HostNetwork && p.d.Changes.HostNetwork == nil || spec.HostIPC && p.d.Changes.HostIPC == nil || spec.HostPID) {
			// The API server refuses hostUsers: false together with any other host
			// namespace, so stripping would only trade one rejection for another.
			p.denyHostUsers(rec, "these sysctls need the pod's own user namespace, and hostUsers: false is not allowed together with hostNetwork, hostIPC or hostPID; drop the sysctls or the other host namespaces")
			deny = true
			continue
		}
		switch mode {
		case ClashStrip:
			f := false
			*hc.Change(&p.d.Changes) = &f
			p.d.Audit.HostNamespaces = append(p.d.Audit.HostNamespaces, rec)
			p.warn("set " + hc.Field + ": false, required by " + listShort(names, 70))
		case ClashDropSysctls:
			for j := range p.sysctls {
				if p.sysctls[j].ns == hc.Sysctls {
					p.sysctls[j].dropped = true
				}
			}
			p.d.Changes.DroppedSysctls = append(p.d.Changes.DroppedSysctls, names...)
			p.d.Audit.DroppedSysctls = append(p.d.Audit.DroppedSysctls, names...)
			p.d.Audit.HostNamespaces = append(p.d.Audit.HostNamespaces, rec)
			p.warn("dropped " + listShort(names, 50) + ": not settable with " + hc.Field)
		case ClashFlag:
			if hc.Sysctls == sysctl.UserNamespace {
				p.warn(hc.Field + " with " + listShort(names, 40) + " fails on the node; set hostUsers: false or drop the sysctl")
				p.denyHostUsers(rec, "user.* sysctls are namespaced by the user namespace and the container runtime refuses them in the host's; set spec.hostUsers: false (the nodes need user-namespace support) or drop the sysctls")
				deny = true
				continue
			}
			p.d.Audit.Flagged = append(p.d.Audit.Flagged, rec)
			p.warn(hc.Field + " with " + listShort(names, 40) + " is rejected by the API server; set " + hc.Field + ": false or drop the sysctl")
		}
	}
	return deny
}

// denyHostUsers flags a User clash and denies the pod, naming both sides and then why.
func (p *planner) denyHostUsers(rec HostNamespaceChange, why string) {
	p.d.Audit.Flagged = append(p.d.Audit.Flagged, rec)
	p.d.Message = "conflict: pod.spec.hostUsers = " + hostUsersString(p.pod.Spec.HostUsers) +
		"; pod.spec.securityContext.sysctls = " + listShort(distinct(rec.Sysctls), wantedListBudget) + ": " + why
	p.d.Allowed = false
}

func hostUsersString(b *bool) string {
	if b == nil {
		return "unset (host user namespace)"
	}
	return strconv.FormatBool(*b)
}
