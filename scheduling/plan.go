package scheduling

// Plan, the one entry point, and the state its steps share. Each step has its own file:
// skip is below; limits.go denies a pod beyond MaxSysctls or MaxSysctlNameLength;
// clashes.go resolves host-namespace clashes (step 2); podsecurity.go checks the
// remaining sysctls against the namespace's Pod Security level; candidates.go finds
// the pools that can run the pod (step 3); placement.go recognises a pod that is
// already placed (step 4) and places it (step 6); explanation.go explains an
// unplaceable pod (step 5); messages.go shapes warnings. Plan only reads its input; the
// webhook applies the Decision (ApplyTo shows how).

import (
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/node/util/sysctl"
)

// noLog is passed to component-helpers functions that want a logger: Plan is pure and
// never logs.
var noLog = logr.Discard()

// podSysctl is one entry of spec.securityContext.sysctls, classified once.
type podSysctl struct {
	written string
	name    string
	ns      sysctl.Namespace
	safeBit uint
	safe    bool
	dropped bool
}

// needsPlacing reports whether s is still to be placed: not dropped by step 2, and not
// a safe sysctl that every pool and any node outside the pools allows.
func (p *planner) needsPlacing(s *podSysctl) bool {
	return !s.dropped && (!s.safe || p.c.everywhereSafe&(1<<s.safeBit) == 0)
}

// toPlace appends the sysctls still to be placed, as the pod writes them.
func (p *planner) toPlace(out []string) []string {
	for i := range p.sysctls {
		if p.needsPlacing(&p.sysctls[i]) {
			out = append(out, p.sysctls[i].written)
		}
	}
	return out
}

// planner carries one Plan call's state between the steps.
type planner struct {
	in      Input
	c       *Compiled
	pod     *corev1.Pod
	d       Decision
	sysctls []podSysctl
	// affinity is the pod's required node affinity, parsed once; nil when absent.
	affinity []parsedTerm
	// affinityMatchesNothing is true when the pod's required node affinity has no
	// non-empty term: the scheduler places such a pod nowhere.
	affinityMatchesNothing bool
	// poolList is the namespace's sysctl-placement.io/pools annotation, looked up once.
	poolList    string
	hasPoolList bool
	// tolerations is the namespace's tolerationsWhitelist, parsed on first use.
	tolerations tolerationsWhitelist
	// ps is the namespace's Pod Security policy (see podsecurity.go).
	ps PodSecurity
	// moreWarnings counts the warnings beyond maxWarnings (see warn).
	moreWarnings int
}

// Plan decides what to do with a pod that asks for sysctls. It never modifies its
// input and never fails: every outcome, including a denial, is a Decision.
func Plan(in Input) Decision {
	if in.Pod == nil {
		return Decision{Outcome: OutcomeSkipped, Reason: ReasonNoPod, Allowed: true}
	}
	if in.Config == nil {
		return Decision{Outcome: OutcomeSkipped, Reason: ReasonNoConfig, Allowed: true}
	}
	p := planner{in: in, c: in.Config, pod: in.Pod}
	p.d.Allowed = true
	if reason, skip := p.skip(); skip {
		return Decision{Outcome: OutcomeSkipped, Reason: reason, Allowed: true}
	}
	if reason, exceeded := p.limitsExceeded(); exceeded {
		return p.finish(OutcomeOverLimit, reason)
	}
	var buf [8]podSysctl
	p.sysctls = classify(buf[:0], in.Pod.Spec.SecurityContext.Sysctls)
	modes := p.modes()
	p.ps = PodSecurityOf(in.Namespace)
	if conflict := p.resolveClashes(modes); conflict {
		return p.finish(OutcomeConflict, ReasonHostUsersConflict)
	}
	if in.Template {
		p.podSecurity(modes.unplaceable)
		return p.finishUnchangedOrChanged(ReasonTemplate)
	}
	if p.remaining() == 0 {
		return p.finishUnchangedOrChanged(ReasonAllSysctlsDropped)
	}
	if p.podSecurity(modes.unplaceable) {
		return p.finish(OutcomeForbidden, ReasonPodSecurityForbidden)
	}
	if p.safeEverywhere() {
		return p.finishUnchangedOrChanged(ReasonSafeSysctlsOnly)
	}
	p.parseAffinity()
	p.poolList, p.hasPoolList = in.Namespace.Annotations[AnnotationPools]
	if p.hasPoolList {
		p.warnUnknownPools()
	}
	var candBuf [16]int
	cands := p.candidates(candBuf[:0])
	if len(cands) == 0 {
		return p.unplaceable(modes.unplaceable)
	}
	if pools, ok := p.alreadyPlaced(cands); ok {
		p.d.Audit.Pools = pools
		return p.finishUnchangedOrChanged(ReasonAlreadyPlaced)
	}
	p.place(cands)
	return p.finish(OutcomeChanged, ReasonPlaced)
}

// skip is step 1.
func (p *planner) skip() (string, bool) {
	switch {
	case !p.in.Namespace.OptedIn():
		return ReasonNamespaceNotEnabled, true
	case p.pod.Annotations[AnnotationSkip] == "true":
		return ReasonPodOptedOut, true
	case p.pod.Spec.SecurityContext == nil || len(p.pod.Spec.SecurityContext.Sysctls) == 0:
		return ReasonNoSysctls, true
	// Templates are never bound: nodeName there is the workload author's pin, and the
	// clash it may carry still fails API validation, so step 2 still helps.
	case !p.in.Template && p.pod.Spec.NodeName != "":
		return ReasonNodeNameSet, true
	}
	return "", false
}

func classify(out []podSysctl, in []corev1.Sysctl) []podSysctl {
	for _, s := range in {
		name := sysctl.NormalizeName(s.Name)
		bit, safe := safeIndex[name]
		out = append(out, podSysctl{written: s.Name, name: name, ns: namespaceOf(name), safeBit: bit, safe: safe})
	}
	return out
}

// effectiveModes is the policy after the namespace's annotations.
type effectiveModes struct {
	clash       [len(HostNamespaces)]ClashMode
	unplaceable UnplaceablePolicy
}

// modes applies the namespace annotations to the policy. An invalid value keeps the
// policy value and warns, so a typo in one namespace never blocks its pods.
func (p *planner) modes() effectiveModes {
	pol := &p.c.config.Policy
	m := effectiveModes{unplaceable: pol.Unplaceable}
	ann := p.in.Namespace.Annotations
	for i := range HostNamespaces {
		h := &HostNamespaces[i]
		m.clash[i] = *h.Mode(pol)
		if v, ok := ann[h.Annotation]; ok {
			if ClashMode(v).Valid() {
				m.clash[i] = ClashMode(v)
			} else {
				p.warn("namespace annotation " + h.Annotation + "=" + quoteShort(v) + " is invalid; use " + clashModeChoices())
			}
		}
	}
	if v, ok := ann[AnnotationUnplaceable]; ok {
		if UnplaceablePolicy(v).Valid() {
			m.unplaceable = UnplaceablePolicy(v)
		} else {
			p.warn("namespace annotation " + AnnotationUnplaceable + "=" + quoteShort(v) + " is invalid; use deny or warn")
		}
	}
	return m
}

// remaining counts the sysctls still to be placed.
func (p *planner) remaining() int {
	n := 0
	for _, s := range p.sysctls {
		if !s.dropped {
			n++
		}
	}
	return n
}

// safeEverywhere is the second half of step 4: every remaining sysctl is a safe one
// that every pool and any node outside the pools (the newest kubelet) allows.
func (p *planner) safeEverywhere() bool {
	for i := range p.sysctls {
		if p.needsPlacing(&p.sysctls[i]) {
			return false
		}
	}
	return true
}

// finishUnchangedOrChanged ends a plan that placed nothing: Changed only when step 2
// resolved a clash.
func (p *planner) finishUnchangedOrChanged(reason string) Decision {
	if p.d.Changes.IsEmpty() {
		return p.finish(OutcomeUnchanged, reason)
	}
	return p.finish(OutcomeChanged, reason)
}

func (p *planner) finish(o Outcome, reason string) Decision {
	p.d.Outcome = o
	p.d.Reason = reason
	p.d.Audit.Reason = reason
	p.boundMessages()
	p.d.Audit.boundAudit()
	return p.d
}
