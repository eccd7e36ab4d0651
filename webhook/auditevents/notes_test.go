package auditevents

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook"
)

// ipcAudit is what the webhook writes for a PostgreSQL pod placed on the ipc pool.
var ipcAudit = scheduling.Audit{
	Pools:        []string{"ipc"},
	NodeSelector: map[string]string{"sysctl-placement.io/pool": "ipc"},
	Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ipc", Effect: corev1.TaintEffectNoSchedule}},
	Reason:       scheduling.ReasonPlaced,
}

func TestNotes(t *testing.T) {
	t.Run("pod Events say what was changed and why", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			audit   scheduling.Audit
			sysctls []string
			// want maps each expected reason to phrases its note must contain.
			want map[string][]string
		}{
			{
				name:    "a pod placed on one pool names the pool, its sysctls, the selector and the toleration",
				audit:   ipcAudit,
				sysctls: []string{"kernel.shmmax", "kernel.sem"},
				want: map[string][]string{ReasonSysctlPlaced: {
					"placed on pool ipc", "its kubelets allow sysctls kernel.shmmax, kernel.sem",
					"nodeSelector sysctl-placement.io/pool=ipc", "tolerations dedicated=ipc:NoSchedule"}},
			},
			{
				name: "a pod placed on several pools names them and the affinity requirement",
				audit: scheduling.Audit{
					Pools: []string{"ipc", "ipc-large"},
					AffinityTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
						{Key: "sysctl-placement.io/pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"ipc", "ipc-large"}}}}},
				},
				want: map[string][]string{ReasonSysctlPlaced: {
					"placed on pools ipc, ipc-large", "their kubelets allow the pod's sysctls",
					"required node affinity (sysctl-placement.io/pool In [ipc ipc-large])"}},
			},
			{
				name: "a stripped hostIPC is its own warning next to the placement",
				audit: func() scheduling.Audit {
					a := ipcAudit
					a.HostNamespaces = []scheduling.HostNamespaceChange{{Field: "hostIPC", Mode: scheduling.ClashStrip, Sysctls: []string{"kernel.shmmax"}}}
					return a
				}(),
				want: map[string][]string{
					ReasonSysctlPlaced:          {"placed on pool ipc"},
					ReasonHostNamespaceStripped: {"set hostIPC: false", "kernel.shmmax", "own IPC namespace", "policy strip"},
				},
			},
			{
				name: "dropped sysctls say which and that the host namespace stays",
				audit: scheduling.Audit{
					HostNamespaces: []scheduling.HostNamespaceChange{{Field: "hostNetwork", Mode: scheduling.ClashDropSysctls, Sysctls: []string{"net.core.somaxconn"}}},
					DroppedSysctls: []string{"net.core.somaxconn"},
				},
				want: map[string][]string{ReasonSysctlsDropped: {"dropped sysctls net.core.somaxconn", "hostNetwork: true, which is kept", "policy drop-sysctls"}},
			},
			{
				name: "a flagged clash says nothing was changed and how to fix it",
				audit: scheduling.Audit{
					Pools:   []string{"net"},
					Flagged: []scheduling.HostNamespaceChange{{Field: "hostNetwork", Mode: scheduling.ClashFlag, Sysctls: []string{"net.ipv4.tcp_keepalive_time"}}},
				},
				want: map[string][]string{
					ReasonSysctlPlaced:          {"placed on pool net"},
					ReasonHostNamespaceConflict: {"hostNetwork: true with sysctls net.ipv4.tcp_keepalive_time changed nothing (policy flag)", "set hostNetwork: false"},
				},
			},
			{
				name:  "an audit without pools or clashes records nothing",
				audit: scheduling.Audit{Reason: scheduling.ReasonAlreadyPlaced},
				want:  map[string][]string{},
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := ForPod(tc.audit, tc.sysctls)
				if len(got) != len(tc.want) {
					t.Fatalf("got %d Events %+v, want reasons %v", len(got), got, tc.want)
				}
				for _, e := range got {
					phrases, ok := tc.want[e.Reason]
					if !ok {
						t.Errorf("unexpected reason %s: %q", e.Reason, e.Note)
						continue
					}
					wantType := corev1.EventTypeWarning
					if e.Reason == ReasonSysctlPlaced {
						wantType = corev1.EventTypeNormal
					}
					if e.Type != wantType || e.Action == "" {
						t.Errorf("%s: type %q action %q, want type %s and an action", e.Reason, e.Type, e.Action, wantType)
					}
					for _, p := range phrases {
						if !strings.Contains(e.Note, p) {
							t.Errorf("%s note %q lacks %q", e.Reason, e.Note, p)
						}
					}
				}
			})
		}
	})

	t.Run("every note fits the API server's limit, even for huge audits", func(t *testing.T) {
		var sysctls []string
		for i := range 300 {
			sysctls = append(sysctls, fmt.Sprintf("kernel.shm_ü_%03d", i)) // multi-byte, so cutting must respect runes
		}
		var pools []string
		for i := range 100 {
			pools = append(pools, fmt.Sprintf("pool-with-a-rather-long-name-%03d", i))
		}
		audit := scheduling.Audit{
			Pools:          pools,
			NodeSelector:   map[string]string{"k": "v"},
			HostNamespaces: []scheduling.HostNamespaceChange{{Field: "hostIPC", Mode: scheduling.ClashStrip, Sysctls: sysctls}, {Field: "hostNetwork", Mode: scheduling.ClashDropSysctls, Sysctls: sysctls}},
			Flagged:        []scheduling.HostNamespaceChange{{Field: "hostUsers", Mode: scheduling.ClashFlag, Sysctls: sysctls}},
		}
		entries := append(ForPod(audit, sysctls), ForTemplate(audit)...)
		entries = append(entries, ForDenial(webhook.DeniedPod{Outcome: scheduling.OutcomeUnplaceable, Message: strings.Repeat("no pool allows kernel.msgmax; ", 100)}))
		if len(entries) != 8 {
			t.Fatalf("got %d entries, want 4 pod + 3 template + 1 denial", len(entries))
		}
		for _, e := range entries {
			if len(e.Note) > MaxNoteLength || !utf8.ValidString(e.Note) || !strings.HasSuffix(e.Note, "...") {
				t.Errorf("%s note is %d bytes (valid UTF-8: %v), want at most %d, cut with \"...\"", e.Reason, len(e.Note), utf8.ValidString(e.Note), MaxNoteLength)
			}
		}
	})

	t.Run("a denial is reported as unplaceable or conflict", func(t *testing.T) {
		owner := metav1.OwnerReference{Kind: "ReplicaSet", Name: "web-7d9f"}
		unplaceable := ForDenial(webhook.DeniedPod{Owner: owner, PodName: "web-7d9f-", Outcome: scheduling.OutcomeUnplaceable, Message: "no pool allows kernel.msgmax"})
		if unplaceable.Reason != ReasonSysctlUnplaceable || unplaceable.Type != corev1.EventTypeWarning ||
			!strings.Contains(unplaceable.Note, "denied pod web-7d9f-: no pool allows kernel.msgmax") {
			t.Errorf("unplaceable denial = %+v", unplaceable)
		}
		conflict := ForDenial(webhook.DeniedPod{Owner: owner, Outcome: scheduling.OutcomeConflict, Message: "conflict: pod.spec.hostUsers"})
		if conflict.Reason != ReasonHostNamespaceConflict || !strings.Contains(conflict.Note, "pod of ReplicaSet web-7d9f") {
			t.Errorf("conflict denial = %+v", conflict)
		}
	})

	t.Run("a denial for Pod Security is reported as such", func(t *testing.T) {
		owner := metav1.OwnerReference{Kind: "ReplicaSet", Name: "postgres-5c9"}
		got := ForDenial(webhook.DeniedPod{Owner: owner, PodName: "postgres-5c9-", Outcome: scheduling.OutcomeForbidden,
			Message: "forbidden by Pod Security: namespace shop enforces baseline:latest"})
		if got.Reason != ReasonSysctlForbiddenByPodSecurity || got.Type != corev1.EventTypeWarning || got.Action != "Deny" ||
			!strings.Contains(got.Note, "denied pod postgres-5c9-: forbidden by Pod Security") {
			t.Fatalf("Pod Security denial = %+v", got)
		}
	})

	t.Run("template Events say they are about the pod template", func(t *testing.T) {
		got := ForTemplate(scheduling.Audit{HostNamespaces: []scheduling.HostNamespaceChange{{Field: "hostIPC", Mode: scheduling.ClashStrip, Sysctls: []string{"kernel.shmmax"}}}})
		if len(got) != 1 || got[0].Reason != ReasonHostNamespaceStripped || !strings.HasPrefix(got[0].Note, "pod template: set hostIPC: false") {
			t.Fatalf("template Events = %+v", got)
		}
	})

	t.Run("Event names are valid and differ only where they should", func(t *testing.T) {
		long := strings.Repeat("a", 240) + "-" + strings.Repeat("b", 12)
		base := EventName("postgres-0", "uid-1", ReasonSysctlPlaced, 0)
		for _, tc := range []struct {
			name string
			got  string
			same bool
		}{
			{"the same pod, reason and interval gets the same name", EventName("postgres-0", "uid-1", ReasonSysctlPlaced, 0), true},
			{"another UID (a recreated StatefulSet pod) gets another name", EventName("postgres-0", "uid-2", ReasonSysctlPlaced, 0), false},
			{"another reason gets another name", EventName("postgres-0", "uid-1", ReasonHostNamespaceStripped, 0), false},
			{"another interval gets another name", EventName("postgres-0", "uid-1", ReasonSysctlPlaced, 1), false},
			{"a 253-character name is shortened", EventName(long, "uid-1", ReasonSysctlPlaced, 0), false},
		} {
			if (tc.got == base) != tc.same {
				t.Errorf("%s: %q vs %q", tc.name, tc.got, base)
			}
			if errs := validation.IsDNS1123Subdomain(tc.got); len(errs) > 0 {
				t.Errorf("%s: %q is not a valid object name: %v", tc.name, tc.got, errs)
			}
		}
		if !strings.HasPrefix(base, "postgres-0.") {
			t.Errorf("name %q should start with the pod's name", base)
		}
	})
}
