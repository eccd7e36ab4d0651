package scheduling

// Limits, checked right after the skip step and before any sysctl is looked at: a pod
// with more sysctls or a longer sysctl name than any workload needs is denied by both
// webhooks with a message that states the limit. Mutating admission runs before the
// API server validates the pod, so whatever fits in a 3 MiB request reaches Plan:
// without these limits, tens of thousands of made-up sysctls would cost work and text
// in proportion to their number times the number of pools.

import (
	"strconv"
	"strings"
)

const (
	// MaxSysctls is the most entries of spec.securityContext.sysctls Plan accepts. The
	// kernel's namespaced sysctls a pod could set number a few hundred in all, most of
	// them per network interface; real workloads set a handful and the most tuned a few
	// dozen, so 128 leaves room without letting a pod cost more than a few microseconds
	// per pool or a few KiB of text.
	MaxSysctls = 128
	// MaxSysctlNameLength is the longest sysctl name Plan accepts: the API server's own
	// limit (it refuses longer names when it validates the pod, after mutating
	// admission), far beyond the longest name any kernel has (under 80 characters, an
	// interface name of at most 15 included).
	MaxSysctlNameLength = 253
)

// Reasons of Outcome OverLimit.
const (
	// ReasonTooManySysctls: the pod asks for more than MaxSysctls sysctls.
	ReasonTooManySysctls = "TooManySysctls"
	// ReasonSysctlNameTooLong: a sysctl name is longer than MaxSysctlNameLength.
	ReasonSysctlNameTooLong = "SysctlNameTooLong"
)

// limitsExceeded is the limits step: when the pod exceeds MaxSysctls or
// MaxSysctlNameLength it returns the reason, with the denial in p.d. It reads only
// lengths, so its cost does not depend on what the names hold.
func (p *planner) limitsExceeded() (reason string, exceeded bool) {
	list := p.pod.Spec.SecurityContext.Sysctls
	if len(list) > MaxSysctls {
		p.d.Message = "too many sysctls: the pod sets " + strconv.Itoa(len(list)) +
			" entries in securityContext.sysctls and sysctl-placement accepts at most " + strconv.Itoa(MaxSysctls) +
			" per pod; set only the sysctls the workload needs (each name once)"
		p.d.Allowed = false
		return ReasonTooManySysctls, true
	}
	for i := range list {
		if n := len(list[i].Name); n > MaxSysctlNameLength {
			p.d.Message = "sysctl name too long: securityContext.sysctls[" + strconv.Itoa(i) + "].name (" +
				strconv.Quote(cutOnRune(list[i].Name, 40)) + "...) has " + strconv.Itoa(n) +
				" characters and sysctl names have at most " + strconv.Itoa(MaxSysctlNameLength) +
				" (the API server's limit; no kernel has a longer one); correct the name"
			p.d.Allowed = false
			return ReasonSysctlNameTooLong, true
		}
	}
	return "", false
}

// auditListBudget bounds, in bytes, each list of sysctl names in the audit record
// (dropped, per host namespace, per Pod Security mode): the record becomes the
// sysctl-placement.io/placement annotation, and an object's annotations may hold
// 256 KiB in all. With at most ten lists the record's names take under 8 KiB.
const auditListBudget = 512

// boundAudit cuts each list of sysctl names in the audit record to auditListBudget
// (always keeping the first name) and counts the names left out in OmittedSysctls, so
// the annotation stays small whatever the pod asks for. It reslices and never writes
// to the lists, which Changes may share.
func (a *Audit) boundAudit() {
	cut := func(names []string) []string {
		used := 0
		for i, n := range names {
			used += len(n) + len(`"",`)
			if i > 0 && used > auditListBudget {
				a.OmittedSysctls += len(names) - i
				return names[:i:i]
			}
		}
		return names
	}
	a.DroppedSysctls = cut(a.DroppedSysctls)
	for i := range a.HostNamespaces {
		a.HostNamespaces[i].Sysctls = cut(a.HostNamespaces[i].Sysctls)
	}
	for i := range a.Flagged {
		a.Flagged[i].Sysctls = cut(a.Flagged[i].Sysctls)
	}
	for i := range a.PodSecurity {
		f := &a.PodSecurity[i]
		if kept := cut(f.Sysctls); len(kept) < len(f.Sysctls) {
			f.Detail = strings.Join(kept, ", ") + " and " + strconv.Itoa(len(f.Sysctls)-len(kept)) + " more"
			f.Sysctls = kept
		}
	}
}
