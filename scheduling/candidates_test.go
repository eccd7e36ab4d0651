package scheduling

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCandidates(t *testing.T) {
	cfg := loadTestConfig(t)
	teamA := enabledNS("team-a", nil)
	data := enabledNS("data", map[string]string{"team": "data"})
	tests := []struct {
		name string
		pod  *corev1.Pod
		ns   Namespace
		want []string
	}{
		{"an IPC sysctl has the IPC pool", newPod(sysctls("kernel.shmmax")), teamA, []string{"ipc-tuned"}},
		{"a pool's namespaceSelector admits its namespaces", newPod(sysctls("kernel.shmmax")), data, []string{"ipc-tuned", "db"}},
		{"every sysctl must be allowed by the pool", newPod(sysctls("kernel.shmmax", "net.core.somaxconn")), teamA, []string{}},
		{"an exact name and a prefix both allow", newPod(sysctls("net.core.somaxconn")), teamA, []string{"net-tuned", "net-wide"}},
		{"a safe sysctl is allowed by the kubelet versions that know it", newPod(sysctls("net.ipv4.tcp_keepalive_time")), teamA, []string{"ipc-tuned", "net-tuned", "net-wide", "userns"}},
		{"the namespace's pools annotation narrows", newPod(sysctls("net.core.somaxconn")), enabledNS("team-a", nil, AnnotationPools, "net-wide"), []string{"net-wide"}},
		{"a conflicting nodeSelector excludes", newPod(sysctls("net.core.somaxconn"), nodeSelector(gkePool, "net-tuned")), teamA, []string{"net-tuned"}},
		{"a required affinity excludes", newPod(sysctls("net.core.somaxconn"), requiredTerms(term(req(gkePool, corev1.NodeSelectorOpNotIn, "net-tuned")))), teamA, []string{"net-wide"}},
		{"an affinity on labels the pool does not set is left to the scheduler", newPod(sysctls("net.core.somaxconn"), requiredTerms(term(req("zone", corev1.NodeSelectorOpIn, "a")))), teamA, []string{"net-tuned", "net-wide"}},
		{"a sysctl that is not namespaced has none", newPod(sysctls("kernel.panic")), teamA, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(cfg, tc.ns, tc.pod)
			if got := poolNames(cfg, p.candidates(nil)); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("candidates = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExclusions(t *testing.T) {
	cfg := loadTestConfig(t)
	tests := []struct {
		name string
		pod  *corev1.Pod
		ns   Namespace
		pool string
		want exclusion
	}{
		{"a candidate has none", newPod(sysctls("kernel.shmmax")), enabledNS("team-a", nil), "ipc-tuned", 0},
		{"every reason is collected, not only the first", newPod(sysctls("kernel.shmmax")), enabledNS("team-a", nil, AnnotationPools, "ipc-tuned"), "db", excludedByAnnotation | excludedByNamespaceSelector},
		{"a pool that does not allow the sysctl", newPod(sysctls("kernel.shmmax")), enabledNS("team-a", nil), "net-tuned", excludedBySysctls},
		{"a nodeSelector and an affinity that exclude", newPod(sysctls("kernel.shmmax"), nodeSelector(gkePool, "legacy"), requiredTerms(term(req(gkePool, corev1.NodeSelectorOpIn, "legacy")))), enabledNS("team-a", nil), "ipc-tuned", excludedByNodeSelector | excludedByAffinity},
		{"a taint outside the namespace's tolerationsWhitelist", newPod(sysctls("kernel.shmmax")), enabledNS("team-a", nil, AnnotationTolerationsWhitelist, `[{"key":"other","operator":"Exists"}]`), "ipc-tuned", excludedByTolerationsWhitelist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(cfg, tc.ns, tc.pod)
			pool := &cfg.pools[cfg.byName[tc.pool]]
			if got := p.exclusions(pool); got != tc.want {
				t.Errorf("exclusions = %06b, want %06b", got, tc.want)
			}
			if got := p.excluded(pool); got != (tc.want&^excludedBySysctls != 0) {
				t.Errorf("excluded = %v; want it to agree with exclusions besides the sysctls", got)
			}
		})
	}
}
