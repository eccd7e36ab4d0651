package scheduling

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestUnplaceable(t *testing.T) {
	cfg := loadTestConfig(t)
	tests := []struct {
		name    string
		pod     *corev1.Pod
		ns      Namespace
		policy  UnplaceablePolicy
		allowed bool
		// message and warning must contain these, in order.
		message []string
		warning string
	}{
		{
			name: "deny names each sysctl and why each pool was excluded",
			pod:  newPod(sysctls("kernel.shmmax", "net.core.somaxconn")), ns: enabledNS("team-a", nil), policy: UnplaceableDeny,
			message: []string{
				"unplaceable sysctls: no node pool can run kernel.shmmax, net.core.somaxconn",
				"; pool ipc-tuned: does not allow net.core.somaxconn",
				"; pool net-tuned: does not allow kernel.shmmax",
				"; pool db: not available to namespace team-a; pool db: does not allow net.core.somaxconn",
			},
		},
		{
			name: "a sysctl that is not namespaced is named as such",
			pod:  newPod(sysctls("kernel.panic")), ns: enabledNS("team-a", nil), policy: UnplaceableDeny,
			message: []string{"kernel.panic is not a namespaced sysctl; no kubelet can allow it"},
		},
		{
			name: "a nodeSelector conflict names both sides",
			pod:  newPod(sysctls("kernel.shmmax"), nodeSelector(gkePool, "legacy")), ns: enabledNS("team-a", nil), policy: UnplaceableDeny,
			message: []string{"pool ipc-tuned: conflict: pod nodeSelector cloud.google.com/gke-nodepool=legacy conflicts with pool selector cloud.google.com/gke-nodepool=ipc-tuned"},
		},
		{
			name: "warn admits the pod and says so",
			pod:  newPod(sysctls("kernel.shmmax", "net.core.somaxconn")), ns: enabledNS("team-a", nil), policy: UnplaceableWarn,
			allowed: true,
			warning: "no pool allows kernel.shmmax, net.core.somaxconn; admitted without placement (policy warn)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(cfg, tc.ns, tc.pod)
			d := p.unplaceable(tc.policy)
			if d.Outcome != OutcomeUnplaceable || d.Allowed != tc.allowed {
				t.Errorf("outcome %s, allowed %v; want Unplaceable, allowed %v", d.Outcome, d.Allowed, tc.allowed)
			}
			rest := d.Message
			for _, want := range tc.message {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("message %q\ndoes not say (in order) %q", d.Message, want)
				}
				rest = rest[i+len(want):]
			}
			if tc.warning != "" && (len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], tc.warning)) {
				t.Errorf("warnings %q; want %q", d.Warnings, tc.warning)
			}
		})
	}
	t.Run("beyond maxExplainedPools the message counts the rest", func(t *testing.T) {
		var pools []Pool
		for i := range maxExplainedPools + 5 {
			pools = append(pools, Pool{Name: fmt.Sprintf("p%d", i), NodeSelector: map[string]string{"pool": fmt.Sprint(i)}})
		}
		many, err := CompilePools(Policy{}, pools)
		if err != nil {
			t.Fatal(err)
		}
		d := newPlanner(many, enabledNS("team-a", nil), newPod(sysctls("kernel.shmmax"))).unplaceable(UnplaceableDeny)
		if !strings.HasSuffix(d.Message, "; and 5 more pools") || strings.Contains(d.Message, "pool p20:") {
			t.Errorf("message %q; want %d pools explained and the 5 others counted", d.Message, maxExplainedPools)
		}
	})
}
