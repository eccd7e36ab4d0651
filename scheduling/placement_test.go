package scheduling

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestAlreadyPlaced(t *testing.T) {
	cfg := loadTestConfig(t)
	teamA := enabledNS("team-a", nil)
	tests := []struct {
		name  string
		pod   *corev1.Pod
		pools []string // nil: not placed yet
	}{
		{"a pod without constraints is not placed", newPod(sysctls("kernel.shmmax")), nil},
		{"a nodeSelector on a candidate it tolerates is placed", newPod(sysctls("kernel.shmmax"), nodeSelector(gkePool, "ipc-tuned"), tolerations(tolIPC)), []string{"ipc-tuned"}},
		{"a nodeSelector on a candidate without its toleration is not", newPod(sysctls("kernel.shmmax"), nodeSelector(gkePool, "ipc-tuned")), nil},
		{"an In term over candidates it tolerates is placed", newPod(sysctls("net.core.somaxconn"), tolerations(tolNet), requiredTerms(term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned", "net-wide")))), []string{"net-tuned", "net-wide"}},
		{"every term must restrict the pod to candidates", newPod(sysctls("net.core.somaxconn"), tolerations(tolNet), requiredTerms(term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned")), term(req("zone", corev1.NodeSelectorOpIn, "a")))), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(cfg, teamA, tc.pod)
			pools, ok := p.alreadyPlaced(p.candidates(nil))
			if ok != (tc.pools != nil) || !reflect.DeepEqual(pools, tc.pools) {
				t.Errorf("alreadyPlaced = %v, %v; want %v", pools, ok, tc.pools)
			}
		})
	}
}

func TestPlace(t *testing.T) {
	cfg := loadTestConfig(t)
	teamA := enabledNS("team-a", nil)
	data := enabledNS("data", map[string]string{"team": "data"})
	tests := []struct {
		name    string
		pod     *corev1.Pod
		ns      Namespace
		changes Changes
		pools   []string
	}{
		{
			name: "one pool: its labels in nodeSelector and an exact toleration for its taint",
			pod:  newPod(sysctls("kernel.shmmax")), ns: teamA,
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}},
			pools:   []string{"ipc-tuned"},
		},
		{
			name: "pools on one label key: one In requirement, and no toleration for PreferNoSchedule",
			pod:  newPod(sysctls("net.core.somaxconn")), ns: teamA,
			changes: Changes{AffinityTerms: []corev1.NodeSelectorTerm{term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned", "net-wide"))}, Tolerations: []corev1.Toleration{tolNet}},
			pools:   []string{"net-tuned", "net-wide"},
		},
		{
			name: "pools on different keys: one term per pool",
			pod:  newPod(sysctls("kernel.shmmax")), ns: data,
			changes: Changes{
				AffinityTerms: []corev1.NodeSelectorTerm{
					term(req(gkePool, corev1.NodeSelectorOpIn, "ipc-tuned")),
					term(req("disk", corev1.NodeSelectorOpIn, "nvme"), req("workload", corev1.NodeSelectorOpIn, "db")),
				},
				Tolerations: []corev1.Toleration{tolIPC, tolDB},
			},
			pools: []string{"ipc-tuned", "db"},
		},
		{
			name: "a pool the pod's nodeSelector already selects wins: only its toleration is added",
			pod:  newPod(sysctls("net.core.somaxconn"), nodeSelector(gkePool, "net-wide")), ns: teamA,
			changes: Changes{Tolerations: []corev1.Toleration{tolNet}},
			pools:   []string{"net-wide"},
		},
		{
			name: "a toleration the pod has is not added again",
			pod:  newPod(sysctls("kernel.shmmax"), tolerations(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists})), ns: teamA,
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}},
			pools:   []string{"ipc-tuned"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(cfg, tc.ns, tc.pod)
			p.place(p.candidates(nil))
			if !reflect.DeepEqual(p.d.Changes, tc.changes) {
				t.Errorf("changes = %+v\nwant %+v", p.d.Changes, tc.changes)
			}
			if !reflect.DeepEqual(p.d.Audit.Pools, tc.pools) {
				t.Errorf("pools = %v, want %v", p.d.Audit.Pools, tc.pools)
			}
			if len(p.d.Warnings) != 1 {
				t.Errorf("warnings = %q; want one saying where the pod was placed", p.d.Warnings)
			}
		})
	}
}

func TestHighestPriority(t *testing.T) {
	pools := []compiledPool{{pool: &Pool{Priority: 1}}, {pool: &Pool{Priority: 5}}, {pool: &Pool{}}, {pool: &Pool{Priority: 5}}}
	if got := highestPriority([]int{0, 1, 2, 3}, pools); !reflect.DeepEqual(got, []int{1, 3}) {
		t.Errorf("highestPriority = %v, want the two pools of priority 5 in config order", got)
	}
}
