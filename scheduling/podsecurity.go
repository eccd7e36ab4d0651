package scheduling

// This file is the Pod Security step, run after the host-namespace clashes are
// resolved: the remaining sysctls are checked the way Pod Security Admission (PSA)
// checks them in the pod's namespace. PSA's baseline and restricted levels forbid every
// sysctl outside the safe set of the level's pinned version
// (k8s.io/pod-security-admission policy/check_sysctls.go), so a pod placed perfectly
// would still be refused by the API server in a namespace enforcing either level.
//
// The safe set of a version is derived from safeSysctlTable: PSA's allowed list of
// version 1.N is exactly the kubelet's safe sysctls added in 1.N or before. The
// integration module compares the two at every version, so they cannot drift.
//
// What this cannot see: the API server's AdmissionConfiguration. Its defaults (for
// namespaces without labels) and its exemptions (usernames, runtime classes,
// namespaces) are invisible to a webhook; a namespace without labels counts as
// privileged (PSA's built-in default), and an exempted namespace is declared with
// AnnotationPodSecurityExempt.

import (
	"slices"
	"strconv"
	"strings"
)

// ReasonPodSecurityForbidden: the namespace's enforced Pod Security level forbids a
// remaining sysctl (Outcome Forbidden under policy deny).
const ReasonPodSecurityForbidden = "PodSecurityForbidden"

// Pod Security labels (set by users on namespaces and read by PSA) and our exemption
// annotation.
const (
	// LabelPodSecurityEnforce is the level PSA enforces: pods violating it are refused.
	LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"
	// LabelPodSecurityEnforceVersion pins the enforce level's version ("latest" or "v1.N").
	LabelPodSecurityEnforceVersion = "pod-security.kubernetes.io/enforce-version"
	// LabelPodSecurityWarn is the level PSA warns about.
	LabelPodSecurityWarn = "pod-security.kubernetes.io/warn"
	// LabelPodSecurityWarnVersion pins the warn level's version.
	LabelPodSecurityWarnVersion = "pod-security.kubernetes.io/warn-version"
	// LabelPodSecurityAudit is the level PSA records in the audit log.
	LabelPodSecurityAudit = "pod-security.kubernetes.io/audit"
	// LabelPodSecurityAuditVersion pins the audit level's version.
	LabelPodSecurityAuditVersion = "pod-security.kubernetes.io/audit-version"
	// AnnotationPodSecurityExempt on a namespace set to "true" declares that the
	// cluster's PSA configuration (AdmissionConfiguration exemptions) exempts it: the
	// webhook cannot read that file, so without this it would warn or deny for nothing.
	AnnotationPodSecurityExempt = AnnotationPrefix + "pod-security-exempt"
)

// PodSecurityMode is one of PSA's three modes.
type PodSecurityMode string

const (
	// PodSecurityEnforce refuses violating pods.
	PodSecurityEnforce PodSecurityMode = "enforce"
	// PodSecurityWarn admits them with a warning.
	PodSecurityWarn PodSecurityMode = "warn"
	// PodSecurityAudit admits them and records the violation in the audit log.
	PodSecurityAudit PodSecurityMode = "audit"
)

// PSA's levels, from the least to the most strict.
const (
	podSecurityPrivileged = "privileged"
	podSecurityBaseline   = "baseline"
	podSecurityRestricted = "restricted"
	podSecurityLatest     = "latest"
)

// podSecurityModes is the one table of PSA's modes: their labels and the level PSA
// evaluates when the level label is invalid (enforce fails closed, warn and audit open).
var podSecurityModes = [3]struct {
	mode         PodSecurityMode
	levelLabel   string
	versionLabel string
	invalidLevel string
}{
	{PodSecurityEnforce, LabelPodSecurityEnforce, LabelPodSecurityEnforceVersion, podSecurityRestricted},
	{PodSecurityWarn, LabelPodSecurityWarn, LabelPodSecurityWarnVersion, podSecurityPrivileged},
	{PodSecurityAudit, LabelPodSecurityAudit, LabelPodSecurityAuditVersion, podSecurityPrivileged},
}

// PodSecurityLevel is one mode's level and version as PSA evaluates the namespace.
type PodSecurityLevel struct {
	Mode PodSecurityMode `json:"mode"`
	// Level is privileged, baseline or restricted.
	Level string `json:"level"`
	// Version is "latest" or "v1.N".
	Version string `json:"version"`
	// minor is N of v1.N, or -1 for latest.
	minor int
	// invalid is the level label's value when PSA could not parse it (and so
	// evaluates the mode's invalidLevel instead).
	invalid string
}

// String is PSA's own notation, as in `violates PodSecurity "baseline:latest"`.
func (l PodSecurityLevel) String() string { return l.Level + ":" + l.Version }

// equivalent is PSA's LevelVersion.Equivalent: same level and version.
func (l PodSecurityLevel) equivalent(o PodSecurityLevel) bool {
	return l.Level == o.Level && l.minor == o.minor
}

// RestrictsSysctls reports whether the level forbids sysctls outside its safe set:
// baseline does, and restricted includes every baseline check.
func (l PodSecurityLevel) RestrictsSysctls() bool {
	return l.Level == podSecurityBaseline || l.Level == podSecurityRestricted
}

// allows is PSA's sysctls check for one sysctl at this level and version. PSA compares
// the name as written in the pod spec: "net/ipv4/ip_local_port_range" is forbidden
// although the kubelet normalises it to a safe sysctl.
func (l PodSecurityLevel) allows(written string) bool {
	if !l.RestrictsSysctls() {
		return true
	}
	i, ok := safeIndex[written]
	return ok && (l.minor < 0 || safeSysctlTable[i].sinceMinor <= uint(l.minor))
}

// PodSecurity is a namespace's Pod Security policy as far as the webhook can see it:
// its labels, read like PSA reads them with the built-in defaults (privileged:latest),
// and our exemption annotation.
type PodSecurity struct {
	// Levels holds the enforce, warn and audit levels, in that order.
	Levels [3]PodSecurityLevel
	// Exempt is true when the namespace declares a PSA exemption
	// (AnnotationPodSecurityExempt: "true"): nothing is reported for it.
	Exempt bool
}

// PodSecurityOf reads the namespace's Pod Security labels as PSA's
// api.PolicyToEvaluate does: an invalid level means restricted for enforce and
// privileged for warn and audit, an invalid version means latest, and warn defaults to
// an explicitly set enforce level (and its version) that is stricter.
func PodSecurityOf(ns Namespace) PodSecurity {
	ps := PodSecurity{Exempt: ns.Annotations[AnnotationPodSecurityExempt] == "true"}
	var hasLevel, validLevel, hasVersion [3]bool
	for i, m := range podSecurityModes {
		l := PodSecurityLevel{Mode: m.mode, Level: podSecurityPrivileged, Version: podSecurityLatest, minor: -1}
		if v, ok := ns.Labels[m.levelLabel]; ok {
			hasLevel[i] = true
			switch v {
			case podSecurityPrivileged, podSecurityBaseline, podSecurityRestricted:
				l.Level = v
				validLevel[i] = true
			default:
				l.Level, l.invalid = m.invalidLevel, v
			}
		}
		if v, ok := ns.Labels[m.versionLabel]; ok {
			hasVersion[i] = true
			if minor, ok := parsePodSecurityVersion(v); ok {
				l.minor = minor
				if minor >= 0 {
					l.Version = "v1." + strconv.Itoa(minor)
				}
			}
		}
		ps.Levels[i] = l
	}
	enforce, warn := &ps.Levels[0], &ps.Levels[1]
	if !hasLevel[1] && validLevel[0] && enforce.Level != podSecurityPrivileged {
		warn.Level = enforce.Level
		if !hasVersion[1] {
			warn.Version, warn.minor = enforce.Version, enforce.minor
		}
	}
	return ps
}

// parsePodSecurityVersion accepts what PSA accepts: "latest" (minor -1) or "v1.N"
// without leading zeros.
func parsePodSecurityVersion(v string) (int, bool) {
	if v == podSecurityLatest {
		return -1, true
	}
	n, ok := strings.CutPrefix(v, "v1.")
	if !ok || n == "" || (len(n) > 1 && n[0] == '0') || strings.Trim(n, "0123456789") != "" {
		return 0, false
	}
	minor, err := strconv.Atoi(n)
	if err != nil {
		return 0, false
	}
	return minor, true
}

// EnforcedSysctlRestriction returns the enforce level when it forbids sysctls outside
// its safe set and the namespace declares no exemption: the API server refuses every
// pod asking for an unsafe sysctl there, whatever the webhook does.
func (ps PodSecurity) EnforcedSysctlRestriction() (PodSecurityLevel, bool) {
	l := ps.Levels[0]
	return l, !ps.Exempt && l.RestrictsSysctls()
}

// strictestRestriction returns the first mode (enforce, warn, audit) whose level
// forbids sysctls and host namespaces, unless the namespace is exempt.
func (ps PodSecurity) strictestRestriction() (PodSecurityLevel, bool) {
	if ps.Exempt {
		return PodSecurityLevel{}, false
	}
	for _, l := range ps.Levels {
		if l.RestrictsSysctls() {
			return l, true
		}
	}
	return PodSecurityLevel{}, false
}

// PodSecurityFinding is one PSA mode whose level forbids some of a pod's sysctls, in
// the {reason, detail} shape of PSA's own checks.
type PodSecurityFinding struct {
	PodSecurityLevel `json:",inline"`
	// Reason is PSA's short reason, "forbidden sysctls".
	Reason string `json:"reason"`
	// Detail lists the forbidden sysctls as written, as PSA's message does.
	Detail string `json:"detail"`
	// Sysctls are the forbidden sysctls as written in the pod spec.
	Sysctls []string `json:"sysctls"`
}

// Check returns, in the order enforce, warn, audit, each mode whose level forbids one
// of the sysctls (names as written in the pod spec) at its pinned version, leaving out
// a mode with the same level and version as one before it. It returns nil when nothing
// forbids them or the namespace is exempt.
func (ps PodSecurity) Check(sysctls []string) []PodSecurityFinding {
	if ps.Exempt {
		return nil
	}
	var out []PodSecurityFinding
	for i, l := range ps.Levels {
		// A mode equivalent to a stricter one already checked adds nothing; PSA itself
		// skips warn when it equals enforce (as it does by default).
		if !l.RestrictsSysctls() || slices.ContainsFunc(ps.Levels[:i], l.equivalent) {
			continue
		}
		var forbidden []string
		for _, s := range sysctls {
			if !l.allows(s) {
				forbidden = append(forbidden, s)
			}
		}
		if len(forbidden) > 0 {
			out = append(out, PodSecurityFinding{
				PodSecurityLevel: l, Reason: "forbidden sysctls", Detail: strings.Join(forbidden, ", "), Sysctls: forbidden,
			})
		}
	}
	return out
}

// CheckPodSecurity is PodSecurityOf(ns).Check(sysctls): what Plan finds for one pod,
// for callers (the live-cluster audit) that report per workload and per namespace.
func CheckPodSecurity(ns Namespace, sysctls []string) []PodSecurityFinding {
	return PodSecurityOf(ns).Check(sysctls)
}

// podSecurity is the Pod Security step of Plan. It reports true when the pod must be
// denied: the enforced level forbids a remaining sysctl and the policy is deny.
// Templates only warn: PSA enforces on pods, and the pods will be checked again.
func (p *planner) podSecurity(policy UnplaceablePolicy) (deny bool) {
	if _, ok := p.ps.strictestRestriction(); !ok {
		return false
	}
	if v, ok := p.in.Namespace.Annotations[AnnotationPodSecurityExempt]; ok && v != "false" {
		p.warn("namespace annotation " + AnnotationPodSecurityExempt + "=" + quoteShort(v) + " is invalid; use true or false")
	}
	var names []string
	for _, s := range p.sysctls {
		if !s.dropped {
			names = append(names, s.written)
		}
	}
	findings := p.ps.Check(names)
	if len(findings) == 0 {
		return false
	}
	p.d.Audit.PodSecurity = findings
	f := findings[0]
	head := podSecurityWarningHead(f.PodSecurityLevel)
	tail := ""
	if f.Mode != PodSecurityEnforce {
		tail = "; enforcing it refuses the pod"
	}
	p.warn(head + listShort(f.Sysctls, maxWarningLen-len(WarningPrefix)-len(head)-len(tail)) + tail)
	if f.Mode != PodSecurityEnforce {
		return false
	}
	p.warn("fix: label the namespace " + LabelPodSecurityEnforce + "=privileged or exempt it from Pod Security")
	if policy != UnplaceableDeny || p.in.Template {
		return false
	}
	p.d.Message = podSecurityMessage(p.in.Namespace.Name, f)
	p.d.Allowed = false
	return true
}

// podSecurityWarningHead starts the warning about a finding of level l.
func podSecurityWarningHead(l PodSecurityLevel) string {
	return "Pod Security " + l.String() + " (" + string(l.Mode) + ") forbids "
}

// IsEnforcedPodSecurityWarning reports whether w is the warning Plan gives when the
// enforced level refuses the pod (or a template's pods), so that tools that see only
// the admission response (plan) can count such workloads.
func IsEnforcedPodSecurityWarning(w string) bool {
	rest, ok := strings.CutPrefix(w, WarningPrefix+"Pod Security ")
	return ok && strings.Contains(rest, " ("+string(PodSecurityEnforce)+") forbids ")
}

// PodSecuritySummary is the per-namespace finding of plan and the live-cluster audit:
// how many workloads ask for sysctls the namespace's enforced level l forbids.
func PodSecuritySummary(namespace string, l PodSecurityLevel, workloads int) string {
	noun := " workloads"
	if workloads == 1 {
		noun = " workload"
	}
	return "namespace " + namespace + " enforces Pod Security " + l.String() + ": " + strconv.Itoa(workloads) + noun +
		" with unsafe sysctls can never run there"
}

// podSecurityMessage explains an enforce finding: the cause, what PSA itself would
// say, and both fixes.
func podSecurityMessage(namespace string, f PodSecurityFinding) string {
	var sb strings.Builder
	sb.WriteString("forbidden by Pod Security: namespace ")
	sb.WriteString(namespace)
	sb.WriteString(" enforces ")
	sb.WriteString(f.String())
	if f.invalid != "" {
		sb.WriteString(" (its label " + LabelPodSecurityEnforce + "=" + strconv.Quote(f.invalid) + " is not a level, so Pod Security enforces restricted)")
	}
	sb.WriteString(", whose sysctls check allows only the safe sysctls of that version; the API server would refuse this pod with `violates PodSecurity \"")
	sb.WriteString(f.String())
	sb.WriteString("\": forbidden sysctls (")
	sb.WriteString(listShort(distinct(f.Sysctls), wantedListBudget))
	sb.WriteString(")`, so it is not placed. A namespace that runs unsafe sysctls must enforce privileged (label ")
	sb.WriteString(LabelPodSecurityEnforce)
	sb.WriteString("=privileged), or the cluster's Pod Security configuration must exempt it; then annotate the namespace ")
	sb.WriteString(AnnotationPodSecurityExempt)
	sb.WriteString("=true so sysctl-placement knows")
	return sb.String()
}

// hostNamespaceNote is the audit note for a clash resolved in a namespace whose Pod
// Security level forbids sharing that host namespace (baseline and restricted forbid
// hostIPC and hostNetwork at every version): stripping also helps that level; keeping
// the host namespace does not. It never changes what is done: the clash mode alone
// decides.
func (p *planner) hostNamespaceNote(hc *HostNamespace, mode ClashMode) string {
	if !hc.PodSecurityForbids {
		return ""
	}
	l, ok := p.ps.strictestRestriction()
	if !ok {
		return ""
	}
	if mode == ClashStrip {
		return hc.Field + ": false also helps Pod Security " + l.String() + " (" + string(l.Mode) + "), which forbids host namespaces"
	}
	return "Pod Security " + l.String() + " (" + string(l.Mode) + ") forbids " + hc.Field + ": true as well"
}
