package main

// The audit's analysis is a pure function of the listed objects (buildAudit), so its
// verdicts are tested without a cluster; audit.go only lists.

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// Event reasons the audit counts.
const (
	// reasonSysctlForbidden is what the kubelet records when it rejects a pod whose
	// sysctls it does not allow (pod phase Failed, status.reason SysctlForbidden).
	reasonSysctlForbidden = "SysctlForbidden"
	// reasonFailedCreate is what a workload controller records when a pod create is
	// refused, e.g. by the webhook's denial.
	reasonFailedCreate = "FailedCreate"
)

// auditStatus is the verdict on a subject's pods today.
type auditStatus string

const (
	statusBroken auditStatus = "broken"
	statusPlaced auditStatus = "placed"
	statusNoPods auditStatus = "no pods"
	statusOK     auditStatus = "ok"
)

// auditOutcome is what the webhook does with a subject's pods, in a verb.
type auditOutcome string

const (
	outcomePlace            auditOutcome = "place"
	outcomeChange           auditOutcome = "change"
	outcomeAlreadyPlaced    auditOutcome = "already placed"
	outcomeDeny             auditOutcome = "deny"
	outcomeAdmitUnplaceable auditOutcome = "admit unplaceable"
	outcomeUnchanged        auditOutcome = "unchanged"
	outcomeSkip             auditOutcome = "skip"
)

// auditWorkload is one listed workload with sysctls in its template.
type auditWorkload struct {
	kind     string
	meta     metav1.ObjectMeta
	template *corev1.PodTemplateSpec
}

// auditInput is everything the audit decides from.
type auditInput struct {
	namespaces map[string]*corev1.Namespace
	nodes      []*corev1.Node
	pods       []*corev1.Pod
	workloads  []auditWorkload
	events     []*corev1.Event
	config     *scheduling.Compiled
	pools      []discovery.PoolStatus
	Listed     auditListed
}

// auditListed counts what was read, for the report's last line.
type auditListed struct {
	Pods      int     `json:"pods"`
	Workloads int     `json:"workloads"`
	Nodes     int     `json:"nodes"`
	Seconds   float64 `json:"seconds"`
}

// auditFinding is one extra observation about a subject's pods, in the project's
// {reason, detail} shape.
type auditFinding struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	// enforced: the finding alone makes the API server refuse the pods.
	enforced bool
}

// auditCheck adds findings about a subject's pod (as its template creates it) in its
// namespace, beyond placement. Pod Security findings (a pod whose sysctls or host
// namespaces the namespace's Pod Security level would refuse) plug in here: append a
// check to auditChecks and every output reports its findings.
type auditCheck func(ns *corev1.Namespace, pod *corev1.Pod) []auditFinding

// auditChecks run on every subject.
var auditChecks = []auditCheck{podSecurityFindings}

// reasonPodSecurity is the reason of findings from the namespace's Pod Security levels.
const reasonPodSecurity = "PodSecurity"

// podSecurityFindings reports each Pod Security mode of the pod's namespace whose level
// forbids its sysctls (scheduling.CheckPodSecurity, the check Plan runs): enforce
// means the API server refuses the pods whatever the webhook does.
func podSecurityFindings(ns *corev1.Namespace, pod *corev1.Pod) []auditFinding {
	if ns == nil {
		return nil
	}
	var out []auditFinding
	for _, f := range scheduling.CheckPodSecurity(asScheduling(ns), scheduling.SysctlNames(pod)) {
		out = append(out, auditFinding{Reason: reasonPodSecurity,
			Detail: fmt.Sprintf("%s %s: %s %s", f.Mode, f.PodSecurityLevel, f.Reason, f.Detail), enforced: f.Mode == scheduling.PodSecurityEnforce})
	}
	return out
}

// asScheduling is the namespace as Plan reads it.
func asScheduling(ns *corev1.Namespace) scheduling.Namespace {
	return scheduling.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
}

// auditReport is the output of `audit -o json|yaml`: a stable interface.
type auditReport struct {
	Workloads  []auditSubject   `json:"workloads"`
	Namespaces []auditNamespace `json:"namespaces"`
	Pools      []output.Pool    `json:"pools"`
	Totals     auditTotals      `json:"totals"`
	Listed     auditListed      `json:"listed"`
}

// auditTotals count the subjects by verdict.
type auditTotals struct {
	Workloads   int `json:"workloads"`
	Broken      int `json:"broken"`
	Unplaceable int `json:"unplaceable"`
	Placed      int `json:"placed"`
	NotOptedIn  int `json:"notOptedIn"`
}

// auditSubject is a top-level workload (a Deployment, not its ReplicaSets) or a bare
// pod that asks for sysctls.
type auditSubject struct {
	Namespace string   `json:"namespace"`
	Kind      string   `json:"kind"`
	Name      string   `json:"name"`
	Sysctls   []string `json:"sysctls"`
	OptedIn   bool     `json:"optedIn"`
	// Status is broken, placed, ok or no pods; see the fields for why.
	Status auditStatus `json:"status"`
	// Broken: pods failed with SysctlForbidden, sit on nodes that refuse their
	// sysctls, or could not be created for their sysctls.
	Broken bool `json:"broken"`
	// Unplaceable: no pool allows its sysctls, so the webhook would deny its pods.
	Unplaceable bool      `json:"unplaceable"`
	Pods        auditPods `json:"pods"`
	Nodes       []string  `json:"nodes,omitempty"`
	// NodeProblems say which pod sits on a node whose kubelet refuses which sysctl.
	NodeProblems []string `json:"nodeProblems,omitempty"`
	// Events are the churn counted from Events: SysctlForbidden on its pods,
	// FailedCreate (for sysctls) on its controllers.
	Events auditChurn `json:"events"`
	// Webhook is what the webhook does (opted in) or would do (not opted in) to its pods.
	Webhook  auditPlan      `json:"webhook"`
	Findings []auditFinding `json:"findings,omitempty"`
}

// auditPods counts a subject's current pods.
type auditPods struct {
	Total int `json:"total"`
	// Running pods, placed or not.
	Running int `json:"running"`
	// Forbidden pods failed with SysctlForbidden.
	Forbidden int `json:"forbidden"`
	// Placed pods carry the webhook's placement label.
	Placed int `json:"placed"`
	// OnRefusingNodes are pods bound to a node whose kubelet would refuse them.
	OnRefusingNodes int `json:"onRefusingNodes"`
}

// auditChurn is the churn of one subject.
type auditChurn struct {
	SysctlForbidden int `json:"sysctlForbidden"`
	FailedCreate    int `json:"failedCreate"`
}

// auditPlan is the engine's answer for a subject's pods.
type auditPlan struct {
	// Outcome: place, already placed, deny, admit unplaceable, unchanged or skip.
	Outcome auditOutcome `json:"outcome"`
	Reason  string       `json:"reason"`
	Pools   []string     `json:"pools,omitempty"`
	Added   string       `json:"added,omitempty"`
	// Message explains a denial: each sysctl and per pool why it was excluded.
	Message string `json:"message,omitempty"`
	// Unallowed are the sysctls no pool allows; when each alone has a pool but no pool
	// allows them all, the one entry "a+b" names the combination.
	Unallowed []string `json:"unallowed,omitempty"`
}

// auditNamespace says what opting a namespace in would change.
type auditNamespace struct {
	Name    string `json:"name"`
	OptedIn bool   `json:"optedIn"`
	// Placeable workloads would be placed (or are already on allowing pools).
	Placeable int `json:"placeable"`
	// BrokenPlaceable of those are broken today: opting in fixes them.
	BrokenPlaceable int `json:"brokenPlaceable"`
	// Denied workloads would have their pods denied; Unallowed says for which sysctls.
	Denied    int      `json:"denied"`
	Unallowed []string `json:"unallowed,omitempty"`
	// Refused workloads would be denied for another reason than the pools: the
	// namespace's Pod Security level, or a host-namespace clash (see the findings and
	// the webhook's message).
	Refused int `json:"refused"`
	// PodSecurity says how many workloads its enforced Pod Security level refuses
	// (scheduling.PodSecuritySummary), when any.
	PodSecurity string `json:"podSecurity,omitempty"`
	// podSecurityRefused counts them.
	podSecurityRefused int
}

// buildAudit decides every verdict of the report.
func buildAudit(in auditInput) auditReport {
	a := auditor{in: in, nodes: map[string]*corev1.Node{}, nodeTables: map[string]*scheduling.Compiled{}, subjects: map[string]*auditSubject{}, owners: map[string]string{}}
	for _, n := range in.nodes {
		a.nodes[n.Name] = n
	}
	a.attachWorkloads()
	a.attachPods()
	a.attachEvents()
	return a.report()
}

// auditor carries one buildAudit's state.
type auditor struct {
	in    auditInput
	nodes map[string]*corev1.Node
	// nodeTables caches a one-pool placement table per kind of node (pool, kubelet and
	// kernel version): the node's kubelet rules, evaluated by scheduling.Plan itself.
	nodeTables map[string]*scheduling.Compiled
	subjects   map[string]*auditSubject
	// templates are the subjects' pods as their templates create them.
	templates map[string]*corev1.Pod
	// owners maps a listed workload to the subject it belongs to (a ReplicaSet to
	// its Deployment).
	owners map[string]string
	order  []string
}

func objectKey(ns, kind, name string) string { return ns + "/" + kind + "/" + name }

func controllerKey(ns string, refs []metav1.OwnerReference) (string, bool) {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return objectKey(ns, r.Kind, r.Name), true
		}
	}
	return "", false
}

func (a *auditor) subject(key, ns, kind, name string, pod *corev1.Pod) *auditSubject {
	if s, ok := a.subjects[key]; ok {
		return s
	}
	s := &auditSubject{Namespace: ns, Kind: kind, Name: name, Sysctls: scheduling.SysctlNames(pod)}
	a.subjects[key] = s
	if a.templates == nil {
		a.templates = map[string]*corev1.Pod{}
	}
	a.templates[key] = pod
	a.order = append(a.order, key)
	return s
}

// attachWorkloads makes a subject of every top-level workload and maps the others
// (ReplicaSets of a Deployment, Jobs of a CronJob) to it.
func (a *auditor) attachWorkloads() {
	byKey := map[string]auditWorkload{}
	for _, w := range a.in.workloads {
		byKey[objectKey(w.meta.Namespace, w.kind, w.meta.Name)] = w
	}
	var top func(key string, depth int) string
	top = func(key string, depth int) string {
		w, ok := byKey[key]
		if !ok || depth > 4 {
			return key
		}
		if owner, ok := controllerKey(w.meta.Namespace, w.meta.OwnerReferences); ok {
			if _, listed := byKey[owner]; listed {
				return top(owner, depth+1)
			}
		}
		return key
	}
	for _, w := range a.in.workloads {
		key := objectKey(w.meta.Namespace, w.kind, w.meta.Name)
		root := top(key, 0)
		a.owners[key] = root
		if root == key {
			a.subject(key, w.meta.Namespace, w.kind, w.meta.Name, &corev1.Pod{ObjectMeta: w.template.ObjectMeta, Spec: w.template.Spec})
		}
	}
}

// attachPods counts each pod under its subject and checks its node.
func (a *auditor) attachPods() {
	for _, p := range a.in.pods {
		key := objectKey(p.Namespace, "Pod", p.Name)
		kind, name := "Pod", p.Name
		if owner, ok := controllerKey(p.Namespace, p.OwnerReferences); ok {
			if root, listed := a.owners[owner]; listed {
				key = root
			} else {
				// An owner the audit does not list (a custom controller): the owner is
				// the subject, planned from this pod.
				key = owner
				for _, r := range p.OwnerReferences {
					if r.Controller != nil && *r.Controller {
						kind, name = r.Kind, r.Name
					}
				}
			}
			a.owners[objectKey(p.Namespace, "Pod", p.Name)] = key
		}
		s := a.subject(key, p.Namespace, kind, name, p)
		s.Pods.Total++
		switch {
		case p.Status.Phase == corev1.PodFailed && p.Status.Reason == reasonSysctlForbidden:
			s.Pods.Forbidden++
		case p.Status.Phase == corev1.PodRunning:
			s.Pods.Running++
		}
		if p.Labels[scheduling.LabelPlaced] == "true" {
			s.Pods.Placed++
		}
		if p.Spec.NodeName == "" {
			continue
		}
		if !slices.Contains(s.Nodes, p.Spec.NodeName) {
			s.Nodes = append(s.Nodes, p.Spec.NodeName)
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue // a failed pod is counted above; its kubelet has spoken
		}
		if why := a.nodeRefuses(p); why != "" {
			s.Pods.OnRefusingNodes++
			s.NodeProblems = append(s.NodeProblems, fmt.Sprintf("pod %s on node %s: %s", p.Name, p.Spec.NodeName, why))
		}
	}
}

// attachEvents counts the churn: the kubelet's SysctlForbidden Events on pods and the
// controllers' FailedCreate Events that name a sysctl.
func (a *auditor) attachEvents() {
	for _, e := range a.in.events {
		count := max(int(e.Count), 1)
		if e.Series != nil {
			count = max(count, int(e.Series.Count))
		}
		ref := e.InvolvedObject
		key := objectKey(ref.Namespace, ref.Kind, ref.Name)
		if root, ok := a.owners[key]; ok {
			key = root
		}
		s, ok := a.subjects[key]
		if !ok {
			continue // its pod or workload is gone, or has no sysctls
		}
		switch {
		case e.Reason == reasonSysctlForbidden:
			s.Events.SysctlForbidden += count
		case e.Reason == reasonFailedCreate && strings.Contains(strings.ToLower(e.Message), "sysctl"):
			s.Events.FailedCreate += count
		}
	}
}

// nodeRefuses says why the pod's node's kubelet would refuse its sysctls, or "". The
// node's rules are its pool's allowlist (no unsafe sysctl outside every pool) and the
// built-in safe list of its own kubelet and kernel versions.
func (a *auditor) nodeRefuses(p *corev1.Pod) string {
	node, ok := a.nodes[p.Spec.NodeName]
	if !ok {
		return ""
	}
	pool := scheduling.Pool{Name: "node", NodeSelector: map[string]string{scheduling.AnnotationPrefix + "audit": "node"},
		KubeletVersion: node.Status.NodeInfo.KubeletVersion, KernelVersion: node.Status.NodeInfo.KernelVersion}
	poolName := "no pool"
	for i := range a.in.pools {
		st := &a.in.pools[i]
		if st.Usable() && labels.SelectorFromSet(st.Pool.NodeSelector).Matches(labels.Set(node.Labels)) {
			pool.AllowedUnsafeSysctls, poolName = st.Pool.AllowedUnsafeSysctls, st.Pool.Name
			break
		}
	}
	key := poolName + "\x00" + pool.KubeletVersion + "\x00" + pool.KernelVersion
	table, ok := a.nodeTables[key]
	if !ok {
		var err error
		if table, err = scheduling.CompilePools(auditPolicy, []scheduling.Pool{pool}); err != nil {
			// A version that does not parse: judge by the newest kubelet's rules.
			pool.KubeletVersion, pool.KernelVersion = "", ""
			table, _ = scheduling.CompilePools(auditPolicy, []scheduling.Pool{pool})
		}
		a.nodeTables[key] = table
	}
	if table == nil {
		return ""
	}
	var refused []string
	for _, sc := range p.Spec.SecurityContext.Sysctls {
		probe := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{sc}}}}
		if scheduling.Plan(scheduling.Input{Pod: probe, Namespace: optedIn(p.Namespace, nil), Config: table}).Outcome == scheduling.OutcomeUnplaceable {
			refused = append(refused, sc.Name)
		}
	}
	if len(refused) == 0 {
		return ""
	}
	return fmt.Sprintf("its kubelet (%s, kubelet %s, kernel %s) does not allow %s", poolName,
		output.OrNone(node.Status.NodeInfo.KubeletVersion), output.OrNone(node.Status.NodeInfo.KernelVersion), strings.Join(refused, ", "))
}

// auditPolicy judges only what a kubelet allows: no clash handling, deny what no pool
// runs.
var auditPolicy = scheduling.Policy{HostIPC: scheduling.ClashFlag, HostNetwork: scheduling.ClashFlag, HostUsers: scheduling.ClashFlag, Unplaceable: scheduling.UnplaceableDeny}

// optedIn returns the namespace as the webhook sees it once opted in.
func optedIn(name string, ns *corev1.Namespace) scheduling.Namespace {
	out := scheduling.Namespace{Name: name, Annotations: map[string]string{}}
	if ns != nil {
		out.Labels = ns.Labels
		for k, v := range ns.Annotations {
			out.Annotations[k] = v
		}
	}
	out.Annotations[scheduling.AnnotationEnabled] = "true"
	return out
}

// planSubject asks the engine what the webhook does with the subject's pods, as if
// the namespace had opted in; optedIn says whether it has.
func (a *auditor) planSubject(s *auditSubject, pod *corev1.Pod) (plan auditPlan, isOptedIn bool) {
	ns := a.in.namespaces[s.Namespace]
	asIs := scheduling.Namespace{Name: s.Namespace}
	if ns != nil {
		asIs = asScheduling(ns)
	}
	probe := pod.DeepCopy()
	probe.Spec.NodeName = "" // planned as the controller creates it, before binding
	real := scheduling.Plan(scheduling.Input{Pod: probe, Namespace: asIs, Config: a.in.config})
	isOptedIn = !(real.Outcome == scheduling.OutcomeSkipped && real.Reason == scheduling.ReasonNamespaceNotEnabled)
	d := real
	if !isOptedIn {
		d = scheduling.Plan(scheduling.Input{Pod: probe, Namespace: optedIn(s.Namespace, ns), Config: a.in.config})
	}
	plan = auditPlan{Reason: d.Reason, Pools: d.Audit.Pools, Added: output.Changes(d.Changes)}
	switch {
	case !d.Allowed:
		// No pool (Unplaceable), the namespace's enforced Pod Security level
		// (Forbidden) or a host-namespace clash under flag (Conflict).
		plan.Outcome, plan.Message = outcomeDeny, d.Message
	case d.Outcome == scheduling.OutcomeUnplaceable:
		plan.Outcome, plan.Message = outcomeAdmitUnplaceable, d.Message
	case d.Outcome == scheduling.OutcomeChanged && len(d.Audit.Pools) > 0:
		plan.Outcome = outcomePlace
	case d.Outcome == scheduling.OutcomeChanged:
		plan.Outcome = outcomeChange
	case d.Reason == scheduling.ReasonAlreadyPlaced:
		plan.Outcome = outcomeAlreadyPlaced
	case d.Outcome == scheduling.OutcomeSkipped:
		plan.Outcome = outcomeSkip
	default:
		plan.Outcome = outcomeUnchanged
	}
	if d.Outcome == scheduling.OutcomeUnplaceable && d.Reason != scheduling.ReasonPodSecurityForbidden {
		// Which sysctls no pool allows: each planned alone, Pod Security aside (it is
		// reported as a finding of its own).
		pools := optedIn(s.Namespace, ns)
		pools.Annotations[scheduling.AnnotationPodSecurityExempt] = "true"
		for _, sc := range probe.Spec.SecurityContext.Sysctls {
			one := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: probe.Name}, Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{sc}}}}
			if scheduling.Plan(scheduling.Input{Pod: one, Namespace: pools, Config: a.in.config}).Outcome == scheduling.OutcomeUnplaceable {
				plan.Unallowed = append(plan.Unallowed, sc.Name)
			}
		}
		if len(plan.Unallowed) == 0 {
			plan.Unallowed = []string{strings.Join(scheduling.SysctlNames(probe), "+")}
		}
	}
	return plan, isOptedIn
}

func (a *auditor) report() auditReport {
	r := auditReport{Workloads: []auditSubject{}, Namespaces: []auditNamespace{}, Listed: a.in.Listed}
	namespaces := map[string]*auditNamespace{}
	sort.Strings(a.order)
	for _, key := range a.order {
		s := a.subjects[key]
		pod := a.templates[key]
		s.Webhook, s.OptedIn = a.planSubject(s, pod)
		for _, check := range auditChecks {
			s.Findings = append(s.Findings, check(a.in.namespaces[s.Namespace], pod)...)
		}
		s.Broken = s.Pods.Forbidden > 0 || s.Pods.OnRefusingNodes > 0 || s.Events.FailedCreate > 0 ||
			(s.Events.SysctlForbidden > 0 && s.Pods.Running < s.Pods.Total)
		s.Unplaceable = (s.Webhook.Outcome == outcomeDeny || s.Webhook.Outcome == outcomeAdmitUnplaceable) &&
			s.Webhook.Reason != scheduling.ReasonPodSecurityForbidden
		switch {
		case s.Broken:
			s.Status = statusBroken
		case s.Pods.Placed > 0:
			s.Status = statusPlaced
		case s.Pods.Total == 0:
			s.Status = statusNoPods
		default:
			s.Status = statusOK
		}
		r.Totals.Workloads++
		if s.Broken {
			r.Totals.Broken++
		}
		if s.Unplaceable {
			r.Totals.Unplaceable++
		}
		if s.Status == statusPlaced {
			r.Totals.Placed++
		}
		ns := namespaces[s.Namespace]
		if ns == nil {
			ns = &auditNamespace{Name: s.Namespace, OptedIn: s.OptedIn}
			namespaces[s.Namespace] = ns
		}
		if !s.OptedIn {
			r.Totals.NotOptedIn++
		}
		if slices.ContainsFunc(s.Findings, func(f auditFinding) bool { return f.enforced }) {
			ns.podSecurityRefused++
		}
		switch {
		case s.Unplaceable:
			ns.Denied++
			for _, u := range s.Webhook.Unallowed {
				if !slices.Contains(ns.Unallowed, u) {
					ns.Unallowed = append(ns.Unallowed, u)
				}
			}
		case s.Webhook.Outcome == outcomeDeny:
			ns.Refused++
		case s.Webhook.Outcome != outcomeSkip:
			ns.Placeable++
			if s.Broken {
				ns.BrokenPlaceable++
			}
		}
		r.Workloads = append(r.Workloads, *s)
	}
	for _, ns := range namespaces {
		sort.Strings(ns.Unallowed)
		// podSecurityRefused is only counted for namespaces that were listed.
		if ns.podSecurityRefused > 0 {
			if level, ok := scheduling.PodSecurityOf(asScheduling(a.in.namespaces[ns.Name])).EnforcedSysctlRestriction(); ok {
				ns.PodSecurity = scheduling.PodSecuritySummary(ns.Name, level, ns.podSecurityRefused)
			}
		}
		r.Namespaces = append(r.Namespaces, *ns)
	}
	sort.Slice(r.Namespaces, func(i, j int) bool { return r.Namespaces[i].Name < r.Namespaces[j].Name })
	r.Pools = output.Pools(a.in.pools)
	return r
}

// writeAudit prints the report in the chosen output.
func writeAudit(w io.Writer, format string, r auditReport) error {
	if format != "table" {
		return output.WriteData(w, format, r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tSYSCTLS\tOPTED IN\tPODS RUNNING/FORBIDDEN/ALL\tNODES\tEVENTS\tSTATUS\tWEBHOOK")
	for _, s := range r.Workloads {
		optedIn := "no"
		if s.OptedIn {
			optedIn = "yes"
		}
		webhook := string(s.Webhook.Outcome)
		switch {
		case len(s.Webhook.Pools) > 0:
			webhook += " on " + strings.Join(s.Webhook.Pools, ",")
		case len(s.Webhook.Unallowed) > 0:
			webhook += ": no pool allows " + strings.Join(s.Webhook.Unallowed, ",")
		case s.Webhook.Outcome == outcomeDeny:
			webhook += " (" + s.Webhook.Reason + ")"
		case s.Webhook.Outcome == outcomeUnchanged:
			webhook = "leave unchanged (" + s.Webhook.Reason + ")"
		case s.Webhook.Outcome == outcomeSkip:
			webhook += " (" + s.Webhook.Reason + ")"
		}
		if !s.OptedIn {
			webhook = "would " + webhook
		}
		nodes := strings.Join(s.Nodes, ",")
		if len(s.Nodes) > 3 {
			nodes = fmt.Sprintf("%s,... (%d)", strings.Join(s.Nodes[:3], ","), len(s.Nodes))
		}
		events := "-"
		if s.Events.SysctlForbidden+s.Events.FailedCreate > 0 {
			events = fmt.Sprintf("%d SysctlForbidden, %d FailedCreate", s.Events.SysctlForbidden, s.Events.FailedCreate)
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%d/%d/%d\t%s\t%s\t%s\t%s\n", s.Namespace, s.Kind, s.Name,
			strings.Join(s.Sysctls, ","), optedIn, s.Pods.Running, s.Pods.Forbidden, s.Pods.Total,
			output.OrNone(nodes), events, s.Status, webhook)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, ns := range r.Namespaces {
		if ns.OptedIn {
			continue
		}
		line := fmt.Sprintf("  opt namespace %s in → %d workload(s) placeable", ns.Name, ns.Placeable)
		if ns.BrokenPlaceable > 0 {
			line += fmt.Sprintf(" (%d broken today)", ns.BrokenPlaceable)
		}
		if ns.Denied > 0 {
			line += fmt.Sprintf(", %d would be denied because no pool allows %s", ns.Denied, strings.Join(ns.Unallowed, ", "))
		}
		if ns.Refused > 0 {
			line += fmt.Sprintf(", %d would be denied all the same (Pod Security or a host-namespace clash: see below)", ns.Refused)
		}
		notes = append(notes, line)
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nNamespaces not opted in:")
		fmt.Fprintln(w, strings.Join(notes, "\n"))
	}
	var podSecurity []string
	for _, ns := range r.Namespaces {
		if ns.PodSecurity != "" {
			podSecurity = append(podSecurity, "  "+ns.PodSecurity)
		}
	}
	if len(podSecurity) > 0 {
		fmt.Fprintln(w, "\nPod Security:")
		fmt.Fprintln(w, strings.Join(podSecurity, "\n"))
	}
	var restricted []string
	for _, p := range r.Pools {
		if ns := output.NamespacesText(p.NamespaceSelector); p.Used && ns != "<all>" {
			restricted = append(restricted, fmt.Sprintf("  pool %s: only namespaces %s", p.Name, ns))
		}
	}
	if len(restricted) > 0 {
		fmt.Fprintln(w, "\nPools restricted to namespaces:")
		fmt.Fprintln(w, strings.Join(restricted, "\n"))
	}
	var problems []string
	for _, s := range r.Workloads {
		for _, p := range s.NodeProblems {
			problems = append(problems, fmt.Sprintf("  %s %s/%s: %s", s.Namespace, s.Kind, s.Name, p))
		}
		for _, f := range s.Findings {
			problems = append(problems, fmt.Sprintf("  %s %s/%s: %s: %s", s.Namespace, s.Kind, s.Name, f.Reason, f.Detail))
		}
		if s.Webhook.Outcome == outcomeDeny && s.OptedIn {
			problems = append(problems, fmt.Sprintf("  %s %s/%s: denied: %s", s.Namespace, s.Kind, s.Name, s.Webhook.Message))
		}
	}
	for _, p := range r.Pools {
		for _, pr := range p.Problems {
			problems = append(problems, fmt.Sprintf("  pool %s: %s: %s", p.Name, pr.Kind, pr.Detail))
		}
	}
	if len(problems) > 0 {
		fmt.Fprintln(w, "\nProblems:")
		fmt.Fprintln(w, strings.Join(problems, "\n"))
	}
	fmt.Fprintf(w, "\n%d workload(s) with sysctls: %d broken, %d unplaceable, %d placed, %d not opted in (read %d pods, %d workloads, %d nodes in %.1fs)\n",
		r.Totals.Workloads, r.Totals.Broken, r.Totals.Unplaceable, r.Totals.Placed, r.Totals.NotOptedIn,
		r.Listed.Pods, r.Listed.Workloads, r.Listed.Nodes, r.Listed.Seconds)
	return nil
}

// joinWords joins "a", "a and b", "a, b and c".
func joinWords(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
