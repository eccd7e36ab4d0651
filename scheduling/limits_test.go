package scheduling

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// madeUpSysctls is n distinct sysctls no pool of the example configurations allows
// except through a net.* pattern, shaped like a tenant's hostile pod of issue 23.
func madeUpSysctls(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = "net.ipv4.conf.if" + strconv.Itoa(i) + ".accept_local"
	}
	return names
}

func TestLimits(t *testing.T) {
	cfg := loadTestConfig(t)
	tests := []struct {
		name    string
		sysctls []string
		reason  string
		// message must contain these.
		message []string
	}{
		{
			name:    "55,000 made-up sysctls are denied with the limit",
			sysctls: madeUpSysctls(55_000),
			reason:  ReasonTooManySysctls,
			message: []string{"sets 55000 entries", "at most " + strconv.Itoa(MaxSysctls) + " per pod"},
		},
		{
			name:    "one sysctl more than the limit is denied",
			sysctls: madeUpSysctls(MaxSysctls + 1),
			reason:  ReasonTooManySysctls,
			message: []string{"at most " + strconv.Itoa(MaxSysctls)},
		},
		{
			name:    "a 10,000-character name is denied with the limit",
			sysctls: []string{"kernel.shmmax", "net.ipv4.conf." + strings.Repeat("x", 10_000) + ".accept_local"},
			reason:  ReasonSysctlNameTooLong,
			message: []string{"sysctls[1].name", "has 10027 characters", "at most " + strconv.Itoa(MaxSysctlNameLength)},
		},
		{
			name:    "tens of thousands of copies of one name are denied by count",
			sysctls: slicesRepeat("kernel.shmmax", 50_000),
			reason:  ReasonTooManySysctls,
			message: []string{"sets 50000 entries"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, template := range []bool{false, true} {
				d := Plan(Input{Pod: newPod(sysctls(tc.sysctls...)), Namespace: enabledNS("team-a", nil), Config: cfg, Template: template})
				if d.Outcome != OutcomeOverLimit || d.Reason != tc.reason || d.Allowed {
					t.Fatalf("template %v: %s/%s allowed %v; want OverLimit/%s denied", template, d.Outcome, d.Reason, d.Allowed, tc.reason)
				}
				if len(d.Message) > MaxMessageLength {
					t.Errorf("message of %d bytes; want at most %d", len(d.Message), MaxMessageLength)
				}
				for _, want := range tc.message {
					if !strings.Contains(d.Message, want) {
						t.Errorf("message %q does not say %q", Truncate(d.Message, 300), want)
					}
				}
				if !d.Changes.IsEmpty() {
					t.Errorf("a pod beyond the limits was changed: %+v", d.Changes)
				}
			}
		})
	}
	t.Run("a pod at both limits is planned", func(t *testing.T) {
		names := madeUpSysctls(MaxSysctls - 1)
		names = append(names, "net.ipv4.conf."+strings.Repeat("y", MaxSysctlNameLength-len("net.ipv4.conf..accept_local"))+".accept_local")
		d := Plan(Input{Pod: newPod(sysctls(names...)), Namespace: enabledNS("team-a", nil), Config: cfg})
		if d.Outcome != OutcomeChanged || d.Reason != ReasonPlaced {
			t.Fatalf("%s/%s: %s; want placed on net-wide", d.Outcome, d.Reason, d.Message)
		}
	})
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestDenialsWithinTheLimitsStaySmall(t *testing.T) {
	cfg := loadTestConfig(t)
	long := func(i int) string {
		prefix := "net.ipv4.conf.if" + strconv.Itoa(i) + "."
		return prefix + strings.Repeat("z", MaxSysctlNameLength-len(prefix))
	}
	var longNames, userNames []string
	for i := range MaxSysctls {
		longNames = append(longNames, long(i))
		userNames = append(userNames, "user.max_"+strconv.Itoa(i)+strings.Repeat("u", MaxSysctlNameLength-20))
	}
	dupes := slicesRepeat("kernel.shmmax", MaxSysctls/2)
	dupes = append(dupes, slicesRepeat("net.core.somaxconn", MaxSysctls/2)...)
	tests := []struct {
		name    string
		pod     *corev1.Pod
		ns      Namespace
		outcome Outcome
		// message must contain these.
		message []string
	}{
		{
			name:    "an unplaceable pod with the most and longest names is summarised per pool",
			pod:     newPod(sysctls(longNames...), nodeSelector(gkePool, "legacy")),
			ns:      enabledNS("team-a", nil),
			outcome: OutcomeUnplaceable,
			message: []string{"no node pool can run " + long(0), " more; pool ipc-tuned: conflict"},
		},
		{
			name:    "duplicate names are named once",
			pod:     newPod(sysctls(dupes...)),
			ns:      enabledNS("team-a", nil),
			outcome: OutcomeUnplaceable,
			message: []string{"no node pool can run kernel.shmmax, net.core.somaxconn; pool ipc-tuned: does not allow net.core.somaxconn;"},
		},
		{
			name:    "a flagged user clash with the most and longest names is summarised",
			pod:     newPod(sysctls(userNames...), hostUsers(true)),
			ns:      enabledNS("team-a", nil),
			outcome: OutcomeConflict,
			message: []string{"pod.spec.securityContext.sysctls = " + userNames[0], " more: user.* sysctls"},
		},
		{
			name:    "a Pod Security denial with the most and longest names is summarised",
			pod:     newPod(sysctls(longNames...)),
			ns:      Namespace{Name: "team-a", Labels: map[string]string{LabelPodSecurityEnforce: "baseline"}, Annotations: map[string]string{AnnotationEnabled: "true"}},
			outcome: OutcomeForbidden,
			message: []string{"forbidden sysctls (" + longNames[0], " more)`"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Plan(Input{Pod: tc.pod, Namespace: tc.ns, Config: cfg})
			if d.Outcome != tc.outcome || d.Allowed {
				t.Fatalf("%s/%s allowed %v; want %s denied", d.Outcome, d.Reason, d.Allowed, tc.outcome)
			}
			if len(d.Message) > MaxMessageLength {
				t.Errorf("message of %d bytes; want at most %d", len(d.Message), MaxMessageLength)
			}
			for _, want := range tc.message {
				if !strings.Contains(d.Message, want) {
					t.Errorf("message %q\ndoes not say %q", d.Message, want)
				}
			}
		})
	}
}

func TestAuditStaysSmall(t *testing.T) {
	cfg := loadTestConfig(t)
	var names []string
	for i := range MaxSysctls {
		prefix := "net.ipv4.conf.if" + strconv.Itoa(i) + "."
		names = append(names, prefix+strings.Repeat("s", MaxSysctlNameLength-len(prefix)))
	}
	ns := enabledNS("team-a", nil, AnnotationHostNetwork, string(ClashDropSysctls))
	d := Plan(Input{Pod: newPod(sysctls(names...), hostNetwork), Namespace: ns, Config: cfg})
	if len(d.Changes.DroppedSysctls) != MaxSysctls {
		t.Fatalf("dropped %d sysctls; want all %d (%s/%s)", len(d.Changes.DroppedSysctls), MaxSysctls, d.Outcome, d.Reason)
	}
	audit, err := json.Marshal(d.Audit)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) > 8<<10 || !strings.Contains(string(audit), `"omittedSysctls":`) {
		t.Errorf("audit record of %d bytes; want at most 8 KiB and the names left out counted: %.300s", len(audit), audit)
	}
}

func TestWarningsAreCounted(t *testing.T) {
	cfg := loadTestConfig(t)
	var unknown []string
	for i := range 1000 {
		unknown = append(unknown, "nope"+strconv.Itoa(i))
	}
	ns := enabledNS("team-a", nil, AnnotationPools, strings.Join(unknown, ","))
	d := Plan(Input{Pod: newPod(sysctls("kernel.shmmax")), Namespace: ns, Config: cfg})
	if len(d.Warnings) != maxWarnings+1 || d.Warnings[maxWarnings] != WarningPrefix+"990 more warnings not shown" {
		t.Errorf("%d warnings, the last %q; want %d and one counting 990 more", len(d.Warnings), d.Warnings[len(d.Warnings)-1], maxWarnings)
	}
}
