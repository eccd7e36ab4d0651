package scheduling

// This file is the decision of DESIGN.md, one step per function: skip, resolve
// host-namespace clashes, find candidate pools, recognise a pod that is already
// placed, explain an unplaceable pod, place. Plan only reads its input; the webhook
// applies the Decision (ApplyTo shows how).

import (
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-helpers/node/util/sysctl"
	schedcorev1 "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

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

// WarningPrefix starts every warning, so users can tell ours from the API server's.
const WarningPrefix = "sysctl-placement: "

// maxWarningLen is the longest warning we emit; kubectl shows each on one line.
const maxWarningLen = 120

// maxExplainedPools bounds the per-pool part of a denial message; with hundreds of
// pools the message would otherwise exceed what an API error comfortably carries.
const maxExplainedPools = 20

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

// hostClash describes one of the three host-namespace clashes of step 2.
type hostClash struct {
	field      string
	ns         sysctl.Namespace
	annotation string
	label      string // how a warning names the host namespace setting
}

var hostClashes = [3]hostClash{
	{field: "hostIPC", ns: sysctl.IPCNamespace, annotation: AnnotationHostIPC, label: "hostIPC"},
	{field: "hostNetwork", ns: sysctl.NetNamespace, annotation: AnnotationHostNetwork, label: "hostNetwork"},
	{field: "hostUsers", ns: sysctl.UserNamespace, annotation: AnnotationHostUsers, label: "hostUsers"},
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
}

// parsedTerm is one required nodeSelectorTerm, reduced to its label requirements.
type parsedTerm struct {
	reqs  []parsedReq
	empty bool
}

// parsedReq is one label requirement, compiled by nodeaffinity so that its semantics
// (In, NotIn, Exists, DoesNotExist, Gt, Lt) are the scheduler's own.
type parsedReq struct {
	req corev1.NodeSelectorRequirement
	sel *nodeaffinity.NodeSelector // nil when the requirement does not parse
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
	var buf [8]podSysctl
	p.sysctls = classify(buf[:0], in.Pod.Spec.SecurityContext.Sysctls)
	modes := p.modes()
	if conflict := p.resolveClashes(modes); conflict {
		return p.finish(OutcomeConflict, ReasonHostUsersConflict)
	}
	if in.Template {
		return p.finishUnchangedOrChanged(ReasonTemplate)
	}
	if p.remaining() == 0 {
		return p.finishUnchangedOrChanged(ReasonAllSysctlsDropped)
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
	case p.in.Namespace.Annotations[AnnotationEnabled] != "true" && p.in.Namespace.Labels[LabelEnabled] != "true":
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
	clash       [3]ClashMode
	unplaceable UnplaceablePolicy
}

// modes applies the namespace annotations to the policy. An invalid value keeps the
// policy value and warns, so a typo in one namespace never blocks its pods.
func (p *planner) modes() effectiveModes {
	pol := p.c.config.Policy
	m := effectiveModes{clash: [3]ClashMode{pol.HostIPC, pol.HostNetwork, pol.HostUsers}, unplaceable: pol.Unplaceable}
	ann := p.in.Namespace.Annotations
	for i, hc := range hostClashes {
		if v, ok := ann[hc.annotation]; ok {
			if validClashMode(ClashMode(v)) {
				m.clash[i] = ClashMode(v)
			} else {
				p.warn("namespace annotation " + hc.annotation + "=" + quoteShort(v) + " is invalid; use strip, drop-sysctls or flag")
			}
		}
	}
	if v, ok := ann[AnnotationUnplaceable]; ok {
		if validUnplaceable(UnplaceablePolicy(v)) {
			m.unplaceable = UnplaceablePolicy(v)
		} else {
			p.warn("namespace annotation " + AnnotationUnplaceable + "=" + quoteShort(v) + " is invalid; use deny or warn")
		}
	}
	return m
}

// resolveClashes is step 2. It reports true when a flagged User clash must be denied.
func (p *planner) resolveClashes(m effectiveModes) (deny bool) {
	spec := &p.pod.Spec
	hostUsers := spec.HostUsers == nil || *spec.HostUsers
	on := [3]bool{spec.HostIPC, spec.HostNetwork, hostUsers}
	for i, hc := range hostClashes {
		if !on[i] {
			continue
		}
		var names []string
		for _, s := range p.sysctls {
			if s.ns == hc.ns && !s.dropped {
				names = append(names, s.written)
			}
		}
		if len(names) == 0 {
			continue
		}
		mode := m.clash[i]
		rec := HostNamespaceChange{Field: hc.field, Mode: mode, Sysctls: names}
		if hc.ns == sysctl.UserNamespace && mode == ClashStrip && (spec.HostNetwork && p.d.Changes.HostNetwork == nil || spec.HostIPC && p.d.Changes.HostIPC == nil || spec.HostPID) {
			// The API server refuses hostUsers: false together with any other host
			// namespace, so stripping would only trade one rejection for another.
			p.d.Audit.Flagged = append(p.d.Audit.Flagged, rec)
			p.d.Message = "conflict: pod.spec.hostUsers = " + hostUsersString(spec.HostUsers) +
				"; pod.spec.securityContext.sysctls = " + strings.Join(names, ", ") +
				": these sysctls need the pod's own user namespace, and hostUsers: false is not allowed together with hostNetwork, hostIPC or hostPID; drop the sysctls or the other host namespaces"
			p.d.Allowed = false
			deny = true
			continue
		}
		switch mode {
		case ClashStrip:
			f := false
			switch hc.ns {
			case sysctl.IPCNamespace:
				p.d.Changes.HostIPC = &f
			case sysctl.NetNamespace:
				p.d.Changes.HostNetwork = &f
			case sysctl.UserNamespace:
				p.d.Changes.HostUsers = &f
			}
			p.d.Audit.HostNamespaces = append(p.d.Audit.HostNamespaces, rec)
			p.warn("set " + hc.field + ": false, required by " + listShort(names, 70))
		case ClashDropSysctls:
			for j := range p.sysctls {
				if p.sysctls[j].ns == hc.ns {
					p.sysctls[j].dropped = true
				}
			}
			p.d.Changes.DroppedSysctls = append(p.d.Changes.DroppedSysctls, names...)
			p.d.Audit.DroppedSysctls = append(p.d.Audit.DroppedSysctls, names...)
			p.d.Audit.HostNamespaces = append(p.d.Audit.HostNamespaces, rec)
			p.warn("dropped " + listShort(names, 50) + ": not settable with " + hc.label)
		default: // ClashFlag
			p.d.Audit.Flagged = append(p.d.Audit.Flagged, rec)
			if hc.ns == sysctl.UserNamespace {
				p.warn(hc.label + " with " + listShort(names, 40) + " fails on the node; set hostUsers: false or drop the sysctl")
				p.d.Message = "conflict: pod.spec.hostUsers = " + hostUsersString(spec.HostUsers) +
					"; pod.spec.securityContext.sysctls = " + strings.Join(names, ", ") +
					": user.* sysctls are namespaced by the user namespace and the container runtime refuses them in the host's; set spec.hostUsers: false (the nodes need user-namespace support) or drop the sysctls"
				p.d.Allowed = false
				deny = true
				continue
			}
			p.warn(hc.label + " with " + listShort(names, 40) + " is rejected by the API server; set " + hc.field + ": false or drop the sysctl")
		}
	}
	return deny
}

func hostUsersString(b *bool) string {
	if b == nil {
		return "unset (host user namespace)"
	}
	return strconv.FormatBool(*b)
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
	for _, s := range p.sysctls {
		if s.dropped {
			continue
		}
		if !s.safe || p.c.everywhereSafe&(1<<s.safeBit) == 0 {
			return false
		}
	}
	return true
}

// parseAffinity compiles each label requirement of the pod's required node affinity
// once, so every pool is checked against the same parsed requirements.
func (p *planner) parseAffinity() {
	a := p.pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	p.affinity = make([]parsedTerm, len(terms))
	p.affinityMatchesNothing = true
	for i := range terms {
		t := &terms[i]
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			// An empty term selects no node (nodeaffinity skips it).
			p.affinity[i].empty = true
			continue
		}
		p.affinityMatchesNothing = false
		reqs := make([]parsedReq, len(t.MatchExpressions))
		for j, r := range t.MatchExpressions {
			reqs[j].req = r
			sel, err := nodeaffinity.NewNodeSelector(&corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{r}}}})
			if err == nil {
				reqs[j].sel = sel
			}
		}
		p.affinity[i].reqs = reqs
	}
}

// warnUnknownPools warns about names in the namespace's pools annotation that no pool
// has: a typo there silently narrows the namespace to fewer pools.
func (p *planner) warnUnknownPools() {
	list := p.poolList
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		item = strings.TrimSpace(item)
		if _, ok := p.c.byName[item]; item != "" && !ok {
			p.warn("namespace annotation " + AnnotationPools + " names unknown pool " + quoteShort(item))
		}
	}
}

// exclusion says why a pool is not a candidate; zero means it is one.
type exclusion uint8

const (
	excludedByAnnotation exclusion = 1 << iota
	excludedByNamespaceSelector
	excludedByNodeSelector
	excludedByAffinity
	excludedByTolerationsWhitelist
	excludedBySysctls
)

// candidates is step 3: the pools this namespace may use, compatible with the pod's
// own constraints, that allow every remaining sysctl. The sysctl condition is computed
// for all pools at once on the precomputed bitsets; the other checks run only on the
// pools that pass it.
func (p *planner) candidates(out []int) []int {
	c := p.c
	var buf [4]uint64
	var allowed []uint64
	if c.words <= len(buf) {
		allowed = buf[:c.words]
	} else {
		allowed = make([]uint64, c.words)
	}
	for w := range allowed {
		allowed[w] = ^uint64(0)
	}
	var matchBuf [8]int
	for _, s := range p.sysctls {
		if s.dropped {
			continue
		}
		if s.ns == sysctl.UnknownNamespace {
			return out // the kubelet allows no sysctl it does not know to be namespaced
		}
		exact := c.exactPools[s.name]
		var safe []uint64
		if s.safe {
			safe = c.safePools[s.safeBit]
		}
		matched := matchBuf[:0]
		for k := range c.prefixPools {
			if strings.HasPrefix(s.name, c.prefixPools[k].prefix) {
				matched = append(matched, k)
			}
		}
		for w := range allowed {
			var v uint64
			if exact != nil {
				v |= exact[w]
			}
			if safe != nil {
				v |= safe[w]
			}
			for _, k := range matched {
				v |= c.prefixPools[k].pools[w]
			}
			allowed[w] &= v
		}
	}
	for w, set := range allowed {
		for set != 0 {
			i := w*64 + bits.TrailingZeros64(set)
			set &= set - 1
			if p.exclude(i, true) == 0 {
				out = append(out, i)
			}
		}
	}
	return out
}

// exclude checks pool i. With fast set it stops at the first failed check and skips the
// sysctl check (candidates did it on bitsets); otherwise it collects every reason, for
// the denial message.
func (p *planner) exclude(i int, fast bool) exclusion {
	pool := &p.c.pools[i]
	var ex exclusion
	if p.hasPoolList && !listContains(p.poolList, pool.name) {
		ex |= excludedByAnnotation
		if fast {
			return ex
		}
	}
	if pool.nsSelector != nil && !pool.nsSelector.Matches(labels.Set(p.in.Namespace.Labels)) {
		ex |= excludedByNamespaceSelector
		if fast {
			return ex
		}
	}
	if _, conflict := p.selectorConflict(pool); conflict {
		ex |= excludedByNodeSelector
		if fast {
			return ex
		}
	}
	if !p.affinityAllows(pool) {
		ex |= excludedByAffinity
		if fast {
			return ex
		}
	}
	if _, outside := p.taintOutsideWhitelist(pool); outside {
		ex |= excludedByTolerationsWhitelist
		if fast {
			return ex
		}
	}
	if fast {
		return ex
	}
	for _, s := range p.sysctls {
		if !s.dropped && !(s.ns != sysctl.UnknownNamespace && pool.allows(s.name, s.safeBit, s.safe)) {
			ex |= excludedBySysctls
			break
		}
	}
	return ex
}

// selectorConflict returns the first key the pod's nodeSelector sets to another value
// than the pool's selector.
func (p *planner) selectorConflict(pool *compiledPool) (string, bool) {
	ns := p.pod.Spec.NodeSelector
	if len(ns) == 0 {
		return "", false
	}
	for _, e := range pool.selector {
		if v, ok := ns[e.key]; ok && v != e.value {
			return e.key, true
		}
	}
	return "", false
}

// affinityAllows evaluates the pod's required node affinity against the pool "as far as
// decidable from labels": within each term only requirements on keys of the pool's
// selector are evaluated (on a node carrying just those labels); other keys and
// matchFields depend on the node and count as satisfiable. Terms are ORed.
func (p *planner) affinityAllows(pool *compiledPool) bool {
	if p.affinity == nil {
		return true
	}
	if p.affinityMatchesNothing {
		return false
	}
	for _, t := range p.affinity {
		if t.empty {
			continue
		}
		ok := true
		for _, r := range t.reqs {
			if _, decidable := pool.pool.NodeSelector[r.req.Key]; !decidable {
				continue
			}
			if r.sel == nil || !r.sel.Match(pool.node) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// tolerates reports whether the pod tolerates every NoSchedule/NoExecute taint of the
// pool, with the scheduler's own matching (comparison operators on: if the API server
// admitted a Gt/Lt toleration, the gate is on).
func tolerates(tolerations []corev1.Toleration, pool *compiledPool) bool {
	for i := range pool.taints {
		if !schedcorev1.TolerationsTolerateTaint(noLog, tolerations, &pool.taints[i], true) {
			return false
		}
	}
	return true
}

// alreadyPlaced is the first half of step 4 plus reinvocation: the pod's nodeSelector
// implies a candidate pool whose taints it tolerates, or every required affinity term
// (with the nodeSelector) restricts the pod to tolerated candidate pools, as this
// engine's own output does.
func (p *planner) alreadyPlaced(cands []int) ([]string, bool) {
	spec := &p.pod.Spec
	for _, i := range cands {
		pool := &p.c.pools[i]
		if impliesPool(spec.NodeSelector, nil, pool) && tolerates(spec.Tolerations, pool) {
			return []string{pool.name}, true
		}
	}
	if p.affinity == nil || p.affinityMatchesNothing {
		return nil, false
	}
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	var names []string
	for ti := range terms {
		if p.affinity[ti].empty {
			continue
		}
		got, ok := p.termRestricts(&terms[ti], cands)
		if !ok {
			return nil, false
		}
		for _, n := range got {
			if !containsString(names, n) {
				names = append(names, n)
			}
		}
	}
	return names, true
}

// termRestricts reports whether every node matching the term (and the pod's
// nodeSelector) belongs to a candidate pool whose taints the pod tolerates.
func (p *planner) termRestricts(t *corev1.NodeSelectorTerm, cands []int) ([]string, bool) {
	spec := &p.pod.Spec
	// One term per pool: the term (with the nodeSelector) pins every selector label.
	for _, i := range cands {
		pool := &p.c.pools[i]
		if impliesPool(spec.NodeSelector, t.MatchExpressions, pool) && tolerates(spec.Tolerations, pool) {
			return []string{pool.name}, true
		}
	}
	// One term for pools sharing a single key: key In [v1 v2 ...] where each value is
	// exactly a candidate pool's selector.
	for _, r := range t.MatchExpressions {
		if r.Operator != corev1.NodeSelectorOpIn || len(r.Values) == 0 {
			continue
		}
		names := make([]string, 0, len(r.Values))
		all := true
		for _, v := range r.Values {
			found := false
			for _, i := range cands {
				pool := &p.c.pools[i]
				if len(pool.selector) == 1 && pool.selector[0].key == r.Key && pool.selector[0].value == v && tolerates(spec.Tolerations, pool) {
					names = append(names, pool.name)
					found = true
					break
				}
			}
			if !found {
				all = false
				break
			}
		}
		if all {
			return names, true
		}
	}
	return nil, false
}

// impliesPool reports whether a node must carry every label of the pool's selector to
// satisfy the nodeSelector and the (ANDed) requirements: each label is either in the
// nodeSelector or pinned by a single-value In requirement.
func impliesPool(nodeSelector map[string]string, reqs []corev1.NodeSelectorRequirement, pool *compiledPool) bool {
	for _, e := range pool.selector {
		if v, ok := nodeSelector[e.key]; ok && v == e.value {
			continue
		}
		pinned := false
		for _, r := range reqs {
			if r.Key == e.key && r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 && r.Values[0] == e.value {
				pinned = true
				break
			}
		}
		if !pinned {
			return false
		}
	}
	return true
}

// place is step 6. Candidates the pod's own nodeSelector already selects (it lacks
// only their tolerations) are preferred to any priority: the author chose them.
func (p *planner) place(cands []int) {
	spec := &p.pod.Spec
	if len(spec.NodeSelector) > 0 {
		var selected []int
		for _, i := range cands {
			if impliesPool(spec.NodeSelector, nil, &p.c.pools[i]) {
				selected = append(selected, i)
			}
		}
		if len(selected) > 0 {
			cands = selected
		}
	}
	chosen := highestPriority(cands, p.c.pools)
	ch := &p.d.Changes
	names := make([]string, len(chosen))
	for k, i := range chosen {
		names[k] = p.c.pools[i].name
	}
	if len(chosen) == 1 {
		pool := &p.c.pools[chosen[0]]
		for _, e := range pool.selector {
			if _, ok := spec.NodeSelector[e.key]; ok {
				continue // equal: a different value would have excluded the pool
			}
			if ch.NodeSelector == nil {
				ch.NodeSelector = make(map[string]string, len(pool.selector))
			}
			ch.NodeSelector[e.key] = e.value
		}
	} else {
		ch.AffinityTerms = p.affinityFor(chosen)
	}
	// added indexes the exact tolerations added so far once there are many, so that
	// hundreds of chosen pools stay linear; a few are checked by the scheduler's rules.
	var added map[taintKey]struct{}
	for _, i := range chosen {
		pool := &p.c.pools[i]
		for ti := range pool.taints {
			t := &pool.taints[ti]
			if schedcorev1.TolerationsTolerateTaint(noLog, spec.Tolerations, t, true) {
				continue
			}
			k := taintKey{t.Key, t.Value, t.Effect}
			if added != nil {
				if _, ok := added[k]; ok {
					continue
				}
				added[k] = struct{}{}
			} else if schedcorev1.TolerationsTolerateTaint(noLog, ch.Tolerations, t, true) {
				continue
			} else if len(ch.Tolerations) >= 8 {
				added = make(map[taintKey]struct{}, len(chosen))
				for _, x := range ch.Tolerations {
					added[taintKey{x.Key, x.Value, x.Effect}] = struct{}{}
				}
				added[k] = struct{}{}
			}
			ch.Tolerations = append(ch.Tolerations, corev1.Toleration{
				Key: t.Key, Operator: corev1.TolerationOpEqual, Value: t.Value, Effect: t.Effect,
			})
		}
	}
	p.d.Audit.Pools = names
	p.d.Audit.NodeSelector = ch.NodeSelector
	p.d.Audit.AffinityTerms = ch.AffinityTerms
	p.d.Audit.Tolerations = ch.Tolerations

	var sb strings.Builder
	if len(names) == 1 {
		sb.WriteString("placed on pool ")
	} else {
		sb.WriteString("placed on pools ")
	}
	sb.WriteString(listShort(names, 45))
	sb.WriteString(" for ")
	var placed []string
	var placedBuf [8]string
	placed = placedBuf[:0]
	for _, s := range p.sysctls {
		if !s.dropped && !(s.safe && p.c.everywhereSafe&(1<<s.safeBit) != 0) {
			placed = append(placed, s.written)
		}
	}
	sb.WriteString(listShort(placed, maxWarningLen-len(WarningPrefix)-sb.Len()))
	p.warn(sb.String())
}

// taintKey identifies an exact toleration added for a taint.
type taintKey struct {
	key, value string
	effect     corev1.TaintEffect
}

// highestPriority keeps the candidates with the highest priority, in config order.
func highestPriority(cands []int, pools []compiledPool) []int {
	top := pools[cands[0]].pool.Priority
	for _, i := range cands[1:] {
		if pr := pools[i].pool.Priority; pr > top {
			top = pr
		}
	}
	out := cands[:0:0]
	for _, i := range cands {
		if pools[i].pool.Priority == top {
			out = append(out, i)
		}
	}
	return out
}

// affinityFor builds the requirement that admits exactly the chosen pools' nodes:
// key In [v1 v2 ...] when they are all selected by one label key, otherwise one term
// per pool pinning each of its selector labels.
func (p *planner) affinityFor(chosen []int) []corev1.NodeSelectorTerm {
	pools := p.c.pools
	key := ""
	singleKey := true
	for _, i := range chosen {
		sel := pools[i].selector
		if len(sel) != 1 || (key != "" && sel[0].key != key) {
			singleKey = false
			break
		}
		key = sel[0].key
	}
	if singleKey {
		values := make([]string, len(chosen))
		for k, i := range chosen {
			values[k] = pools[i].selector[0].value
		}
		slices.Sort(values)
		return []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: key, Operator: corev1.NodeSelectorOpIn, Values: values,
		}}}}
	}
	terms := make([]corev1.NodeSelectorTerm, len(chosen))
	for k, i := range chosen {
		sel := pools[i].selector
		reqs := make([]corev1.NodeSelectorRequirement, len(sel))
		for j, e := range sel {
			reqs[j] = corev1.NodeSelectorRequirement{Key: e.key, Operator: corev1.NodeSelectorOpIn, Values: []string{e.value}}
		}
		terms[k].MatchExpressions = reqs
	}
	return terms
}

// unplaceable is step 5: explain, per sysctl and per pool, why nothing fits.
func (p *planner) unplaceable(policy UnplaceablePolicy) Decision {
	var wanted []string
	for _, s := range p.sysctls {
		if !s.dropped && !(s.safe && p.c.everywhereSafe&(1<<s.safeBit) != 0) {
			wanted = append(wanted, s.written)
		}
	}
	if policy == UnplaceableWarn {
		p.warn("no pool allows " + listShort(wanted, 50) + "; admitted without placement (policy warn)")
		return p.finish(OutcomeUnplaceable, ReasonUnplaceable)
	}
	var sb strings.Builder
	sb.WriteString("unplaceable sysctls: no node pool can run ")
	sb.WriteString(strings.Join(wanted, ", "))
	for _, s := range p.sysctls {
		if !s.dropped && s.ns == sysctl.UnknownNamespace {
			sb.WriteString("; ")
			sb.WriteString(s.written)
			sb.WriteString(" is not a namespaced sysctl; no kubelet can allow it")
		}
	}
	if len(p.c.pools) == 0 {
		sb.WriteString("; no node pools are configured")
	}
	if p.affinityMatchesNothing {
		sb.WriteString("; the pod's required node affinity has no non-empty nodeSelectorTerm, so it matches no node")
	}
	for i := range p.c.pools {
		if i == maxExplainedPools {
			sb.WriteString("; and ")
			sb.WriteString(strconv.Itoa(len(p.c.pools) - i))
			sb.WriteString(" more pools")
			break
		}
		p.explain(&sb, i)
	}
	p.d.Message = sb.String()
	p.d.Allowed = false
	return p.finish(OutcomeUnplaceable, ReasonUnplaceable)
}

// explain appends, for pool i, every reason it is not a candidate.
func (p *planner) explain(sb *strings.Builder, i int) {
	pool := &p.c.pools[i]
	ex := p.exclude(i, false)
	start := func() {
		sb.WriteString("; pool ")
		sb.WriteString(pool.name)
		sb.WriteString(": ")
	}
	if ex&excludedByAnnotation != 0 {
		start()
		sb.WriteString("not listed in namespace annotation " + AnnotationPools)
	}
	if ex&excludedByNamespaceSelector != 0 {
		start()
		sb.WriteString("not available to namespace ")
		sb.WriteString(p.in.Namespace.Name)
	}
	if ex&excludedByNodeSelector != 0 {
		key, _ := p.selectorConflict(pool)
		start()
		sb.WriteString("conflict: pod nodeSelector ")
		sb.WriteString(key + "=" + p.pod.Spec.NodeSelector[key])
		sb.WriteString(" conflicts with pool selector ")
		sb.WriteString(pool.selectorString)
	}
	if ex&excludedByAffinity != 0 {
		start()
		sb.WriteString("pod required node affinity excludes pool selector ")
		sb.WriteString(pool.selectorString)
	}
	if ex&excludedByTolerationsWhitelist != 0 {
		t, _ := p.taintOutsideWhitelist(pool)
		start()
		sb.WriteString(p.explainWhitelist(t))
	}
	if ex&excludedBySysctls != 0 {
		start()
		sb.WriteString("does not allow ")
		first := true
		for _, s := range p.sysctls {
			if !s.dropped && !(s.ns != sysctl.UnknownNamespace && pool.allows(s.name, s.safeBit, s.safe)) {
				if !first {
					sb.WriteString(", ")
				}
				sb.WriteString(s.written)
				first = false
			}
		}
	}
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
	return p.d
}

// IsEmpty reports whether applying the changes would change nothing; the webhook
// sends no patch then.
func (c Changes) IsEmpty() bool {
	return len(c.NodeSelector) == 0 && len(c.AffinityTerms) == 0 && len(c.Tolerations) == 0 &&
		c.HostIPC == nil && c.HostNetwork == nil && c.HostUsers == nil && len(c.DroppedSysctls) == 0
}

// warn adds a short user-facing warning, prefixed and clipped to maxWarningLen.
func (p *planner) warn(msg string) {
	p.d.Warnings = append(p.d.Warnings, clip(WarningPrefix+msg))
}

func clip(s string) string {
	if len(s) <= maxWarningLen {
		return s
	}
	cut := maxWarningLen - 3
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// listShort joins names with ", " within about budget bytes, ending with "and N more"
// when they do not fit, so a warning stays on one line.
func listShort(names []string, budget int) string {
	if len(names) == 0 {
		return ""
	}
	total := 0
	for i, n := range names {
		total += len(n)
		if i > 0 {
			total += 2
		}
	}
	if total <= budget || len(names) == 1 {
		return strings.Join(names, ", ")
	}
	var sb strings.Builder
	used := 0
	for i, n := range names {
		more := " and " + strconv.Itoa(len(names)-i) + " more"
		if i > 0 && used+2+len(n)+len(more) > budget {
			sb.WriteString(more)
			return sb.String()
		}
		if i > 0 {
			sb.WriteString(", ")
			used += 2
		}
		sb.WriteString(n)
		used += len(n)
	}
	return sb.String()
}

// quoteShort quotes an annotation value for a warning, shortened if long.
func quoteShort(v string) string {
	if len(v) > 20 {
		v = v[:20] + "..."
	}
	return strconv.Quote(v)
}

// listContains reports whether the comma-separated list holds name (spaces around
// entries are ignored). It does not allocate: it runs on every Plan for every pool.
func listContains(list, name string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		if strings.TrimSpace(item) == name {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
