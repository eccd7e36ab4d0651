package audit

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

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
		if table, err = scheduling.CompilePools(kubeletPolicy, []scheduling.Pool{pool}); err != nil {
			// A version that does not parse: judge by the newest kubelet's rules.
			pool.KubeletVersion, pool.KernelVersion = "", ""
			table, _ = scheduling.CompilePools(kubeletPolicy, []scheduling.Pool{pool})
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

// kubeletPolicy judges only what a kubelet allows: no clash handling, deny what no pool
// runs.
var kubeletPolicy = scheduling.Policy{HostIPC: scheduling.ClashFlag, HostNetwork: scheduling.ClashFlag, HostUsers: scheduling.ClashFlag, Unplaceable: scheduling.UnplaceableDeny}

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
func (a *auditor) planSubject(s *subject, pod *corev1.Pod) (plan webhookPlan, isOptedIn bool) {
	ns := a.in.namespaces[s.Namespace]
	asIs := scheduling.Namespace{Name: s.Namespace}
	if ns != nil {
		asIs = asScheduling(ns)
	}
	probe := pod.DeepCopy()
	probe.Spec.NodeName = "" // planned as the controller creates it, before binding
	real := scheduling.Plan(scheduling.Input{Pod: probe, Namespace: asIs, Config: a.in.config})
	isOptedIn = real.Outcome != scheduling.OutcomeSkipped || real.Reason != scheduling.ReasonNamespaceNotEnabled
	d := real
	if !isOptedIn {
		d = scheduling.Plan(scheduling.Input{Pod: probe, Namespace: optedIn(s.Namespace, ns), Config: a.in.config})
	}
	plan = webhookPlan{Outcome: d.Verdict(), Reason: d.Reason, Pools: d.Audit.Pools, Added: d.Changes.String()}
	if plan.Outcome == scheduling.VerdictDenied || plan.Outcome == scheduling.VerdictAdmittedUnplaceable {
		// No pool (Unplaceable), the namespace's enforced Pod Security level
		// (Forbidden) or a host-namespace clash under flag (Conflict).
		plan.Message = d.Message
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
