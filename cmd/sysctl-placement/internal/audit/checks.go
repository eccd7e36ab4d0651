package audit

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// checkFunc adds findings about a subject's pod (as its template creates it) in its
// namespace, beyond placement. Pod Security findings (a pod whose sysctls or host
// namespaces the namespace's Pod Security level would refuse) plug in here: append a
// check to checks and every output reports its findings.
type checkFunc func(ns *corev1.Namespace, pod *corev1.Pod) []finding

// checks run on every subject.
var checks = []checkFunc{podSecurityFindings}

// reasonPodSecurity is the reason of findings from the namespace's Pod Security levels.
const reasonPodSecurity = "PodSecurity"

// podSecurityFindings reports each Pod Security mode of the pod's namespace whose level
// forbids its sysctls (scheduling.CheckPodSecurity, the check Plan runs): enforce
// means the API server refuses the pods whatever the webhook does.
func podSecurityFindings(ns *corev1.Namespace, pod *corev1.Pod) []finding {
	if ns == nil {
		return nil
	}
	var out []finding
	for _, f := range scheduling.CheckPodSecurity(asScheduling(ns), scheduling.SysctlNames(pod)) {
		out = append(out, finding{Reason: reasonPodSecurity,
			Detail: fmt.Sprintf("%s %s: %s %s", f.Mode, f.PodSecurityLevel, f.Reason, f.Detail), enforced: f.Mode == scheduling.PodSecurityEnforce})
	}
	return out
}

// asScheduling is the namespace as Plan reads it.
func asScheduling(ns *corev1.Namespace) scheduling.Namespace {
	return scheduling.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
}
