package e2e

import (
	"fmt"
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fuzzedPolicyCases builds n pods and namespaces from the vocabulary of the golden
// config (scheduling/testdata/config.yaml), with a fixed seed so a failure reproduces:
// sysctls of every kernel namespace and none, host namespaces, nodeSelectors,
// tolerations and required node affinity on the pools' keys, and namespace modes.
func fuzzedPolicyCases(n int) []policyCase {
	r := rand.New(rand.NewPCG(26, 2026))
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	sysctlNames := []string{"kernel.shmmax", "kernel.sem", "kernel.msgmax", "fs.mqueue.msg_max", "net.core.somaxconn",
		"net.ipv4.tcp_max_syn_backlog", "net.ipv4.tcp_keepalive_time", "net.ipv4.ip_local_port_range", "user.max_user_namespaces",
		"user/max_ipc_namespaces", "kernel.shmfoo", "net/ipv4/tcp_syncookies", "kernel.domainname", "net.ipv4.conf.all.forwarding"}
	pools := []string{"ipc-tuned", "net-tuned", "net-wide", "legacy", "elsewhere"}
	modes := []string{"strip", "drop-sysctls", "flag", "bogus"}
	var out []policyCase
	for i := range n {
		spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/c"}}}
		seen := map[string]bool{}
		for range 1 + r.IntN(3) {
			name := pick(sysctlNames)
			if !seen[name] {
				seen[name] = true
				spec.SecurityContext = orSecurityContext(spec.SecurityContext)
				spec.SecurityContext.Sysctls = append(spec.SecurityContext.Sysctls, corev1.Sysctl{Name: name, Value: "1"})
			}
		}
		spec.HostIPC = r.IntN(4) == 0
		spec.HostNetwork = r.IntN(5) == 0
		if !spec.HostIPC && !spec.HostNetwork && r.IntN(3) == 0 {
			f := false
			spec.HostUsers = &f
		}
		switch r.IntN(4) {
		case 0:
			spec.NodeSelector = map[string]string{"cloud.google.com/gke-nodepool": pick(pools)}
		case 1:
			spec.NodeSelector = map[string]string{"workload": "db", "zone": "a"}
		}
		switch r.IntN(4) {
		case 0:
			spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: pick([]string{"ipc", "net", "db"}), Effect: corev1.TaintEffect(pick([]string{"NoSchedule", "NoExecute", ""}))}}
		case 1:
			spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
		case 2:
			spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
		}
		if r.IntN(3) == 0 {
			var terms []corev1.NodeSelectorTerm
			for range 1 + r.IntN(2) {
				var t corev1.NodeSelectorTerm
				switch r.IntN(5) {
				case 0:
					t.MatchExpressions = []corev1.NodeSelectorRequirement{{Key: "cloud.google.com/gke-nodepool", Operator: corev1.NodeSelectorOpIn, Values: []string{pick(pools), pick(pools)}}}
				case 1:
					t.MatchExpressions = []corev1.NodeSelectorRequirement{{Key: "cloud.google.com/gke-nodepool", Operator: corev1.NodeSelectorOpNotIn, Values: []string{pick(pools)}}}
				case 2:
					t.MatchExpressions = []corev1.NodeSelectorRequirement{{Key: "topology.kubernetes.io/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}
				case 3:
					t.MatchExpressions = []corev1.NodeSelectorRequirement{{Key: "workload", Operator: corev1.NodeSelectorOpDoesNotExist}}
				case 4:
					t.MatchFields = []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-1"}}}
				}
				terms = append(terms, t)
			}
			spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
		}
		ns := policyNamespace{Name: fmt.Sprintf("fuzz-%d", i), Labels: map[string]string{}, Annotations: map[string]string{}}
		if r.IntN(8) != 0 {
			ns.Labels[policyEnabled] = "true"
		}
		if r.IntN(3) == 0 {
			ns.Labels["team"] = "data"
		}
		for _, annotation := range policyHostModes {
			if r.IntN(3) == 0 {
				ns.Annotations[annotation] = pick(modes)
			}
		}
		if r.IntN(4) == 0 {
			ns.Annotations[policyUnplaceable] = pick([]string{"deny", "warn"})
		}
		if r.IntN(5) == 0 {
			ns.Annotations[policyPools] = pick(pools) + ", " + pick(pools)
		}
		if spec.SecurityContext == nil {
			continue
		}
		out = append(out, policyCase{name: fmt.Sprintf("fuzz-%03d", i), ns: ns, pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: spec}})
	}
	return out
}

func orSecurityContext(sc *corev1.PodSecurityContext) *corev1.PodSecurityContext {
	if sc == nil {
		return &corev1.PodSecurityContext{}
	}
	return sc
}
