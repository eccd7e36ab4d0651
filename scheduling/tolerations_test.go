package scheduling

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestPlanRespectsTenantBoundaries covers what a namespace's own annotations can and
// cannot do: they only ever narrow the pools the admin's config allows, and the
// cluster's tolerations whitelist keeps pools that need a forbidden toleration out.
func TestPlanRespectsTenantBoundaries(t *testing.T) {
	cfg := loadTestConfig(t)
	withWhitelist := func(name, whitelist string, extra ...string) Namespace {
		return enabledNS(name, nil, append([]string{AnnotationTolerationsWhitelist, whitelist}, extra...)...)
	}

	tests := map[string]struct {
		pod *corev1.Pod
		ns  Namespace

		outcome  Outcome
		changes  Changes
		warnings []string
		message  []string
		pools    []string
	}{
		"a namespace annotation cannot widen past a pool's namespaceSelector": {
			pod: newPod(sysctls("kernel.sem")), ns: enabledNS("team-x", nil, AnnotationPools, "db"),
			outcome: OutcomeUnplaceable,
			message: []string{"pool db: not available to namespace team-x"},
		},
		"a whitelist that would allow everything still cannot widen past a namespaceSelector": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-x", `[{"operator":"Exists"}]`, AnnotationPools, "db"),
			outcome: OutcomeUnplaceable,
			message: []string{"pool db: not available to namespace team-x"},
		},
		"a whitelist holding the pool's exact toleration keeps the pool": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `[{"key":"dedicated","operator":"Equal","value":"ipc","effect":"NoSchedule"}]`),
			outcome: OutcomeChanged, pools: []string{"ipc-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}},
		},
		"a whitelist entry without operator means Equal and keeps the pool": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `[{"key":"dedicated","value":"ipc"}]`),
			outcome: OutcomeChanged, pools: []string{"ipc-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}},
		},
		"a whitelist entry Exists on the key allows every value and effect": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `[{"key":"dedicated","operator":"Exists"}]`),
			outcome: OutcomeChanged, pools: []string{"ipc-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}},
		},
		"a whitelist entry with an empty key and Exists allows every toleration": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `[{"operator":"Exists"}]`),
			outcome: OutcomeChanged, pools: []string{"ipc-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}},
		},
		"a whitelist without the pool's toleration makes the pool unavailable and says so": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `[{"key":"dedicated","operator":"Equal","value":"net","effect":"NoExecute"}]`),
			outcome: OutcomeUnplaceable,
			message: []string{"unplaceable sysctls: no node pool can run kernel.sem", "pool ipc-tuned: its taint dedicated=ipc:NoSchedule needs a toleration outside the namespace's tolerationsWhitelist"},
		},
		"a whitelist entry for another effect does not cover the taint": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `[{"key":"dedicated","operator":"Exists","effect":"NoExecute"}]`),
			outcome: OutcomeUnplaceable,
			message: []string{"pool ipc-tuned: its taint dedicated=ipc:NoSchedule needs a toleration outside the namespace's tolerationsWhitelist"},
		},
		"a NoExecute whitelist entry with tolerationSeconds does not cover a toleration without them": {
			pod: newPod(sysctls("net.core.rmem_max")), ns: withWhitelist("team-a", `[{"key":"dedicated","operator":"Equal","value":"net","effect":"NoExecute","tolerationSeconds":60}]`),
			outcome: OutcomeUnplaceable,
			message: []string{"pool net-wide: its taint dedicated=net:NoExecute needs a toleration outside the namespace's tolerationsWhitelist"},
		},
		"a whitelist only removes the pools needing a forbidden toleration": {
			pod: newPod(sysctls("net.core.somaxconn")), ns: withWhitelist("team-a", `[{"key":"other","operator":"Exists"}]`),
			outcome: OutcomeChanged, pools: []string{"net-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "net-tuned"}},
		},
		"a pod that already tolerates the taint needs nothing from the whitelist": {
			pod: newPod(sysctls("kernel.sem"), tolerations(tolIPC)), ns: withWhitelist("team-a", `[{"key":"other","operator":"Exists"}]`),
			outcome: OutcomeChanged, pools: []string{"ipc-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}},
		},
		"an empty whitelist restricts nothing, as in the plugin": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `[]`),
			outcome: OutcomeChanged, pools: []string{"ipc-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}},
		},
		"an empty whitelist annotation value restricts nothing, as in the plugin": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", ``),
			outcome: OutcomeChanged, pools: []string{"ipc-tuned"},
			changes: Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}},
		},
		"an invalid whitelist lets no toleration be added, with a warning and the reason": {
			pod: newPod(sysctls("kernel.sem")), ns: withWhitelist("team-a", `dedicated=ipc`),
			outcome:  OutcomeUnplaceable,
			warnings: []string{"namespace annotation scheduler.alpha.kubernetes.io/tolerationsWhitelist is not valid JSON"},
			message:  []string{"pool ipc-tuned: its taint dedicated=ipc:NoSchedule needs a toleration, and the namespace's tolerationsWhitelist annotation is not valid JSON"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := Plan(Input{Pod: tc.pod, Namespace: tc.ns, Config: cfg})
			if d.Outcome != tc.outcome {
				t.Fatalf("got %s/%s, want %s (message %q, warnings %q)", d.Outcome, d.Reason, tc.outcome, d.Message, d.Warnings)
			}
			if tc.outcome == OutcomeUnplaceable && d.Allowed {
				t.Errorf("an unplaceable pod under policy deny was allowed")
			}
			if !reflect.DeepEqual(d.Changes, tc.changes) {
				t.Errorf("changes:\n got %+v\nwant %+v", d.Changes, tc.changes)
			}
			for _, w := range tc.warnings {
				if !containsSub(d.Warnings, w) {
					t.Errorf("no warning contains %q; got %q", w, d.Warnings)
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
			assertNoTolerationOutside(t, tc.ns, d.Changes.Tolerations)
			assertIdempotent(t, tc.pod, tc.ns, cfg, false, d)
		})
	}
}

// assertNoTolerationOutside fails when the decision adds a toleration the namespace's
// whitelist (when it restricts) does not allow.
func assertNoTolerationOutside(t *testing.T, ns Namespace, added []corev1.Toleration) {
	t.Helper()
	p := planner{in: Input{Namespace: ns}}
	w := p.whitelist()
	if !w.restricts {
		return
	}
	for _, tol := range added {
		if w.invalid != nil || !whitelistAllows(w.list, tol) {
			t.Errorf("added toleration %+v is outside the namespace's tolerationsWhitelist", tol)
		}
	}
}

func TestIsSupersetFollowsThePlugin(t *testing.T) {
	secs := func(s int64) *int64 { return &s }
	exact := corev1.Toleration{Key: "k", Operator: corev1.TolerationOpEqual, Value: "v", Effect: corev1.TaintEffectNoExecute}
	tests := map[string]struct {
		ss   corev1.Toleration
		want bool
	}{
		"an equal toleration is a superset":                       {exact, true},
		"Exists on the key covers any value":                      {corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists}, true},
		"an empty key with Exists covers every key":               {corev1.Toleration{Operator: corev1.TolerationOpExists}, true},
		"an empty key with Equal covers only the empty key":       {corev1.Toleration{Value: "v"}, false},
		"another value does not cover":                            {corev1.Toleration{Key: "k", Value: "w"}, false},
		"another effect does not cover":                           {corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}, false},
		"NoExecute with tolerationSeconds does not cover forever": {corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs(60)}, false},
		"an unknown operator never covers":                        {corev1.Toleration{Key: "k", Operator: "Gt", Value: "1"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := isSuperset(&tc.ss, &exact); got != tc.want {
				t.Fatalf("isSuperset(%+v, %+v) = %v, want %v", tc.ss, exact, got, tc.want)
			}
		})
	}
}
