package scheduling

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const gkePool = "cloud.google.com/gke-nodepool"

var (
	tolIPC = tol("dedicated", "ipc", corev1.TaintEffectNoSchedule)
	tolNet = tol("dedicated", "net", corev1.TaintEffectNoExecute)
	tolDB  = tol("dedicated", "db", corev1.TaintEffectNoExecute)
)

func TestPlan(t *testing.T) {
	cfg := loadTestConfig(t)
	teamA := enabledNS("team-a", nil)
	data := enabledNS("data", map[string]string{"team": "data"})
	f := false

	tests := map[string]struct {
		pod      *corev1.Pod
		ns       Namespace
		template bool
		config   *Compiled

		outcome Outcome
		reason  string
		denied  bool
		changes Changes
		// warnings and message must contain these substrings, in order of the lists.
		warnings []string
		message  []string
		pools    []string
	}{
		// Step 1: skip.
		"a pod in a namespace that has not opted in is skipped": {
			pod: newPod(sysctls("kernel.sem")), ns: Namespace{Name: "x"},
			outcome: OutcomeSkipped, reason: ReasonNamespaceNotEnabled,
		},
		"a namespace annotated enabled=yes has not opted in": {
			pod: newPod(sysctls("kernel.sem")), ns: Namespace{Name: "x", Annotations: map[string]string{AnnotationEnabled: "yes"}},
			outcome: OutcomeSkipped, reason: ReasonNamespaceNotEnabled,
		},
		"a namespace labelled enabled=true has opted in as if annotated": {
			pod: newPod(sysctls("kernel.sem")), ns: Namespace{Name: "x", Labels: map[string]string{LabelEnabled: "true"}},
			outcome: OutcomeChanged, reason: ReasonPlaced, pools: []string{"ipc-tuned"},
			changes: Changes{
				NodeSelector: map[string]string{"cloud.google.com/gke-nodepool": "ipc-tuned"},
				Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ipc", Effect: corev1.TaintEffectNoSchedule}},
			},
		},
		"a pod with the skip annotation is skipped": {
			pod: newPod(sysctls("kernel.sem"), podAnnotation(AnnotationSkip, "true")), ns: teamA,
			outcome: OutcomeSkipped, reason: ReasonPodOptedOut,
		},
		"a pod without sysctls is skipped": {
			pod: newPod(), ns: teamA, outcome: OutcomeSkipped, reason: ReasonNoSysctls,
		},
		"a pod with nodeName set is skipped": {
			pod: newPod(sysctls("kernel.sem"), nodeName("n1")), ns: teamA,
			outcome: OutcomeSkipped, reason: ReasonNodeNameSet,
		},

		// Step 2: host-namespace clashes.
		"hostIPC with an IPC sysctl is stripped by default": {
			pod: newPod(sysctls("kernel.shmmax"), hostIPC), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				HostIPC:      &f,
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
			warnings: []string{"set hostIPC: false, required by kernel.shmmax", "placed on pool ipc-tuned for kernel.shmmax"},
			pools:    []string{"ipc-tuned"},
		},
		"hostIPC with an IPC sysctl under drop-sysctls drops the sysctl": {
			pod:     newPod(sysctls("kernel.shmmax"), hostIPC),
			ns:      enabledNS("team-a", nil, AnnotationHostIPC, "drop-sysctls"),
			outcome: OutcomeChanged, reason: ReasonAllSysctlsDropped,
			changes:  Changes{DroppedSysctls: []string{"kernel.shmmax"}},
			warnings: []string{"dropped kernel.shmmax: not settable with hostIPC"},
		},
		"hostIPC under flag warns that the API server rejects it and still places": {
			pod:     newPod(sysctls("kernel.shmmax"), hostIPC),
			ns:      enabledNS("team-a", nil, AnnotationHostIPC, "flag"),
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
			warnings: []string{"hostIPC with kernel.shmmax is rejected by the API server; set hostIPC: false or drop the sysctl"},
		},
		"hostNetwork with a net sysctl is flagged by default": {
			pod: newPod(sysctls("net.core.somaxconn"), hostNetwork), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				AffinityTerms: []corev1.NodeSelectorTerm{term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned", "net-wide"))},
				Tolerations:   []corev1.Toleration{tolNet},
			},
			warnings: []string{"hostNetwork with net.core.somaxconn is rejected by the API server"},
		},
		"hostNetwork under strip is set to false": {
			pod:     newPod(sysctls("net.ipv4.ip_local_port_range"), hostNetwork),
			ns:      enabledNS("team-a", nil, AnnotationHostNetwork, "strip"),
			outcome: OutcomeChanged, reason: ReasonSafeSysctlsOnly,
			changes:  Changes{HostNetwork: &f},
			warnings: []string{"set hostNetwork: false, required by net.ipv4.ip_local_port_range"},
		},
		"a user sysctl in the host user namespace is denied under flag": {
			pod: newPod(sysctls("user.max_user_namespaces")), ns: teamA,
			outcome: OutcomeConflict, reason: ReasonHostUsersConflict, denied: true,
			warnings: []string{"hostUsers with user.max_user_namespaces fails on the node; set hostUsers: false or drop the sysctl"},
			message:  []string{"conflict: pod.spec.hostUsers = unset", "user.max_user_namespaces", "set spec.hostUsers: false"},
		},
		"a user sysctl with hostUsers false is placed": {
			pod: newPod(sysctls("user.max_user_namespaces"), hostUsers(false)), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{NodeSelector: map[string]string{"node.example.com/userns": "true"}},
		},
		"a user sysctl under strip gets hostUsers false": {
			pod:     newPod(sysctls("user.max_user_namespaces")),
			ns:      enabledNS("team-a", nil, AnnotationHostUsers, "strip"),
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{HostUsers: &f, NodeSelector: map[string]string{"node.example.com/userns": "true"}},
		},
		"stripping hostUsers is refused while hostPID is on": {
			pod:     newPod(sysctls("user.max_user_namespaces"), func(p *corev1.Pod) { p.Spec.HostPID = true }),
			ns:      enabledNS("team-a", nil, AnnotationHostUsers, "strip"),
			outcome: OutcomeConflict, reason: ReasonHostUsersConflict, denied: true,
			message: []string{"hostUsers: false is not allowed together with hostNetwork, hostIPC or hostPID"},
		},
		"an invalid host-ipc annotation keeps the policy and warns": {
			pod:     newPod(sysctls("kernel.sem"), hostIPC),
			ns:      enabledNS("team-a", nil, AnnotationHostIPC, "remove"),
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				HostIPC:      &f,
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
			warnings: []string{`annotation sysctl-placement.io/host-ipc="remove" is invalid; use strip, drop-sysctls or flag`},
		},
		"a template only gets its clash resolved, never placed": {
			pod: newPod(sysctls("kernel.shmmax"), hostIPC), ns: teamA, template: true,
			outcome: OutcomeChanged, reason: ReasonTemplate,
			changes: Changes{HostIPC: &f},
		},
		"a template without clash is unchanged even when unplaceable": {
			pod: newPod(sysctls("vm.swappiness")), ns: teamA, template: true,
			outcome: OutcomeUnchanged, reason: ReasonTemplate,
		},

		// Step 3 and 6: candidates and placement.
		"a database pod is placed on the one IPC pool with its toleration": {
			pod: newPod(sysctls("kernel.shmmax", "kernel.sem")), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
			warnings: []string{"placed on pool ipc-tuned for kernel.shmmax, kernel.sem"},
			pools:    []string{"ipc-tuned"},
		},
		"sysctls written with slashes are normalised": {
			pod: newPod(sysctls("kernel/shmmax")), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
		},
		"pools of the same priority sharing one key give one In requirement": {
			pod: newPod(sysctls("net.core.somaxconn")), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				AffinityTerms: []corev1.NodeSelectorTerm{term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned", "net-wide"))},
				Tolerations:   []corev1.Toleration{tolNet},
			},
			warnings: []string{"placed on pools net-tuned, net-wide for net.core.somaxconn"},
			pools:    []string{"net-tuned", "net-wide"},
		},
		"a namespace selected by a pool's namespaceSelector gets pools of different keys as one term each": {
			pod: newPod(sysctls("kernel.sem")), ns: data,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				AffinityTerms: []corev1.NodeSelectorTerm{
					term(req(gkePool, corev1.NodeSelectorOpIn, "ipc-tuned")),
					term(req("disk", corev1.NodeSelectorOpIn, "nvme"), req("workload", corev1.NodeSelectorOpIn, "db")),
				},
				Tolerations: []corev1.Toleration{tolIPC, tolDB},
			},
			pools: []string{"ipc-tuned", "db"},
		},
		"the pools annotation narrows the candidates": {
			pod: newPod(sysctls("kernel.sem")), ns: enabledNS("data", map[string]string{"team": "data"}, AnnotationPools, "db, net-tuned,gpu"),
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{"workload": "db", "disk": "nvme"},
				Tolerations:  []corev1.Toleration{tolDB},
			},
			warnings: []string{`namespace annotation sysctl-placement.io/pools names unknown pool "gpu"`},
		},
		"the pools annotation cannot widen past a namespaceSelector": {
			pod: newPod(sysctls("kernel.sem")), ns: enabledNS("team-x", nil, AnnotationPools, "db"),
			outcome: OutcomeUnplaceable, reason: ReasonUnplaceable, denied: true,
			message: []string{"unplaceable sysctls: no node pool can run kernel.sem", "pool db: not available to namespace team-x", "pool ipc-tuned: not listed in namespace annotation sysctl-placement.io/pools"},
		},
		"a pod nodeSelector with another value excludes a pool": {
			pod: newPod(sysctls("net.core.somaxconn"), nodeSelector(gkePool, "net-tuned")), ns: teamA,
			outcome: OutcomeUnchanged, reason: ReasonAlreadyPlaced, pools: []string{"net-tuned"},
		},
		"required affinity on a pool key narrows the candidates": {
			pod: newPod(sysctls("net.core.somaxconn"), requiredTerms(term(req(gkePool, corev1.NodeSelectorOpNotIn, "net-tuned")))), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "net-wide"},
				Tolerations:  []corev1.Toleration{tolNet},
			},
		},
		"required affinity on other keys is undecidable and keeps every pool": {
			pod: newPod(sysctls("net.core.somaxconn"), requiredTerms(term(req("topology.kubernetes.io/zone", corev1.NodeSelectorOpIn, "a")))), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				AffinityTerms: []corev1.NodeSelectorTerm{term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned", "net-wide"))},
				Tolerations:   []corev1.Toleration{tolNet},
			},
		},
		"a higher priority pool wins over others": {
			pod: newPod(sysctls("net.ipv4.tcp_keepalive_time")), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
		},

		// Step 4: already placed.
		"a pod that already selects an allowing pool and tolerates it is left alone": {
			pod: newPod(sysctls("kernel.sem"), nodeSelector(gkePool, "ipc-tuned"), tolerations(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists})), ns: teamA,
			outcome: OutcomeUnchanged, reason: ReasonAlreadyPlaced, pools: []string{"ipc-tuned"},
		},
		"a pod that selects an allowing pool but lacks the toleration gets only the toleration": {
			pod: newPod(sysctls("kernel.sem"), nodeSelector(gkePool, "ipc-tuned")), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{Tolerations: []corev1.Toleration{tolIPC}},
		},
		"a pod asking only for safe sysctls every pool allows is left alone": {
			pod: newPod(sysctls("net.ipv4.ip_local_port_range", "kernel.shm_rmid_forced")), ns: teamA,
			outcome: OutcomeUnchanged, reason: ReasonSafeSysctlsOnly,
		},
		"a pod constrained by this engine's own affinity is left alone": {
			pod: newPod(sysctls("net.core.somaxconn"),
				requiredTerms(term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned", "net-wide"))),
				tolerations(tolNet)), ns: teamA,
			outcome: OutcomeUnchanged, reason: ReasonAlreadyPlaced, pools: []string{"net-tuned", "net-wide"},
		},

		"an empty required term selects nothing and is kept apart": {
			pod: newPod(sysctls("kernel.sem"), requiredTerms(corev1.NodeSelectorTerm{}, term(req("zone", corev1.NodeSelectorOpIn, "a")))), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
		},
		"a required affinity without terms matches no node and is unplaceable": {
			pod: newPod(sysctls("kernel.sem"), requiredTerms()), ns: teamA,
			outcome: OutcomeUnplaceable, reason: ReasonUnplaceable, denied: true,
			message: []string{"required node affinity has no non-empty nodeSelectorTerm", "pool ipc-tuned: pod required node affinity excludes pool selector"},
		},
		"a pool the pod already selects is kept over a higher-priority one": {
			pod:     newPod(sysctls("kernel.sem"), nodeSelector("workload", "db", "disk", "nvme")),
			ns:      enabledNS("data", map[string]string{"team": "data"}, AnnotationPools, "db,net-tuned,ipc-tuned"),
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{Tolerations: []corev1.Toleration{tolDB}},
			pools:   []string{"db"},
		},
		"a sysctl listed twice is placed once": {
			pod: newPod(sysctls("kernel.sem", "kernel/sem")), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
		},
		"an Exists toleration for the taint key is enough": {
			pod: newPod(sysctls("net.core.somaxconn"), tolerations(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists})), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				AffinityTerms: []corev1.NodeSelectorTerm{term(req(gkePool, corev1.NodeSelectorOpIn, "net-tuned", "net-wide"))},
			},
		},
		"a toleration for another effect does not count": {
			pod: newPod(sysctls("kernel.sem"), tolerations(tol("dedicated", "ipc", corev1.TaintEffectNoExecute))), ns: teamA,
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{
				NodeSelector: map[string]string{gkePool: "ipc-tuned"},
				Tolerations:  []corev1.Toleration{tolIPC},
			},
		},

		// Step 5: unplaceable.
		"a sysctl no pool allows is denied with a reason per pool": {
			pod: newPod(sysctls("kernel.sem", "net.core.somaxconn")), ns: teamA,
			outcome: OutcomeUnplaceable, reason: ReasonUnplaceable, denied: true,
			message: []string{
				"unplaceable sysctls: no node pool can run kernel.sem, net.core.somaxconn",
				"pool ipc-tuned: does not allow net.core.somaxconn",
				"pool net-tuned: does not allow kernel.sem",
				"pool db: not available to namespace team-a",
			},
		},
		"a non-namespaced sysctl is explained": {
			pod: newPod(sysctls("vm.swappiness")), ns: teamA,
			outcome: OutcomeUnplaceable, reason: ReasonUnplaceable, denied: true,
			message: []string{"vm.swappiness is not a namespaced sysctl; no kubelet can allow it"},
		},
		"a conflicting nodeSelector is named on both sides": {
			pod: newPod(sysctls("kernel.sem"), nodeSelector(gkePool, "gpu")), ns: teamA,
			outcome: OutcomeUnplaceable, reason: ReasonUnplaceable, denied: true,
			message: []string{"pool ipc-tuned: conflict: pod nodeSelector cloud.google.com/gke-nodepool=gpu conflicts with pool selector cloud.google.com/gke-nodepool=ipc-tuned"},
		},
		"policy warn admits an unplaceable pod with a warning": {
			pod: newPod(sysctls("vm.swappiness")), ns: enabledNS("team-a", nil, AnnotationUnplaceable, "warn"),
			outcome: OutcomeUnplaceable, reason: ReasonUnplaceable,
			warnings: []string{"no pool allows vm.swappiness; admitted without placement (policy warn)"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := tc.config
			if c == nil {
				c = cfg
			}
			before := tc.pod.DeepCopy()
			d := Plan(Input{Pod: tc.pod, Namespace: tc.ns, Config: c, Template: tc.template})
			if !reflect.DeepEqual(before, tc.pod) {
				t.Fatalf("Plan modified its input pod")
			}
			if d.Outcome != tc.outcome || d.Reason != tc.reason {
				t.Fatalf("got %s/%s, want %s/%s (message %q, warnings %q)", d.Outcome, d.Reason, tc.outcome, tc.reason, d.Message, d.Warnings)
			}
			if d.Allowed == tc.denied {
				t.Errorf("allowed = %v, want %v (message %q)", d.Allowed, !tc.denied, d.Message)
			}
			if !reflect.DeepEqual(d.Changes, tc.changes) {
				t.Errorf("changes:\n got %+v\nwant %+v", d.Changes, tc.changes)
			}
			for _, w := range tc.warnings {
				if !containsSub(d.Warnings, w) {
					t.Errorf("no warning contains %q; got %q", w, d.Warnings)
				}
			}
			for _, w := range d.Warnings {
				if len(w) > maxWarningLen || !strings.HasPrefix(w, WarningPrefix) {
					t.Errorf("warning %q is too long or lacks the prefix", w)
				}
			}
			for _, m := range tc.message {
				if !strings.Contains(d.Message, m) {
					t.Errorf("message lacks %q:\n%s", m, d.Message)
				}
			}
			if tc.pools != nil && !reflect.DeepEqual(d.Audit.Pools, tc.pools) {
				t.Errorf("audit pools = %q, want %q", d.Audit.Pools, tc.pools)
			}
			assertIdempotent(t, tc.pod, tc.ns, c, tc.template, d)
		})
	}
}

// assertIdempotent applies the decision and plans again: step 7 says nothing changes.
func assertIdempotent(t *testing.T, pod *corev1.Pod, ns Namespace, c *Compiled, template bool, d Decision) {
	t.Helper()
	out := pod.DeepCopy()
	ApplyTo(&out.Spec, d.Changes)
	again := Plan(Input{Pod: out, Namespace: ns, Config: c, Template: template})
	if !again.Changes.IsEmpty() {
		t.Errorf("planning the output again changes it: %+v (first decision %s/%s)", again.Changes, d.Outcome, d.Reason)
	}
	if d.Outcome == OutcomeChanged && again.Outcome != OutcomeUnchanged && again.Outcome != OutcomeSkipped {
		t.Errorf("planning the output again gives %s/%s, want Unchanged or Skipped", again.Outcome, again.Reason)
	}
}

func containsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestPlanWithoutPoolsExplainsIt(t *testing.T) {
	c, err := CompilePools(Policy{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Plan(Input{Pod: newPod(sysctls("kernel.sem")), Namespace: enabledNS("a", nil), Config: c})
	if d.Outcome != OutcomeUnplaceable || d.Allowed || !strings.Contains(d.Message, "no node pools are configured") {
		t.Fatalf("got %+v", d)
	}
}

func TestPlanNeverPanicsOnNilInput(t *testing.T) {
	if d := Plan(Input{}); d.Outcome != OutcomeSkipped || !d.Allowed {
		t.Fatalf("got %+v", d)
	}
	if d := Plan(Input{Pod: newPod(sysctls("kernel.sem"))}); d.Reason != ReasonNoConfig {
		t.Fatalf("got %+v", d)
	}
}
