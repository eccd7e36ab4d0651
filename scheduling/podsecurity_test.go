package scheduling

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// psaAllowed is PSA's allowed list per version, written out from
// k8s.io/pod-security-admission policy/check_sysctls.go (v0.37.2) independently of
// safeSysctlTable, so that a wrong row in the table fails here (the integration module
// also runs PSA's own check against the table).
var psaAllowed = []struct {
	sinceMinor int
	names      []string
}{
	{0, []string{"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}},
	{27, []string{"net.ipv4.ip_local_reserved_ports"}},
	{29, []string{"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}},
	{32, []string{"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}},
	{37, []string{"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"}},
}

// psaAllowedAt returns the names PSA's baseline allows at v1.minor (-1: latest).
func psaAllowedAt(minor int) map[string]bool {
	out := map[string]bool{}
	for _, g := range psaAllowed {
		if minor < 0 || g.sinceMinor <= minor {
			for _, n := range g.names {
				out[n] = true
			}
		}
	}
	return out
}

func psaNS(labels ...string) Namespace {
	ns := enabledNS("team-a", map[string]string{})
	for i := 0; i+1 < len(labels); i += 2 {
		ns.Labels[labels[i]] = labels[i+1]
	}
	return ns
}

func TestCheckPodSecurity(t *testing.T) {
	// Every sysctl PSA allows at some version, plus unsafe ones and a safe one written
	// with slashes (PSA compares names as written).
	var candidates []string
	for _, g := range psaAllowed {
		candidates = append(candidates, g.names...)
	}
	candidates = append(candidates, "kernel.shmmax", "kernel.sem", "net.core.somaxconn", "net/ipv4/ip_local_port_range", "vm.swappiness")
	versions := []string{"latest", "v1.0", "v1.25", "v1.26", "v1.27", "v1.28", "v1.29", "v1.31", "v1.32", "v1.36", "v1.37", "v1.38", "v1.99"}
	for _, level := range []string{"privileged", "baseline", "restricted"} {
		for _, version := range versions {
			minor := -1
			if version != "latest" {
				minor, _ = strconv.Atoi(strings.TrimPrefix(version, "v1."))
			}
			allowed := psaAllowedAt(minor)
			for _, s := range candidates {
				name := "the enforced level " + level + ":" + version + " "
				want := level == "privileged" || allowed[s]
				if want {
					name += "allows " + s
				} else {
					name += "forbids " + s
				}
				t.Run(name, func(t *testing.T) {
					ns := psaNS(LabelPodSecurityEnforce, level, LabelPodSecurityEnforceVersion, version)
					got := CheckPodSecurity(ns, []string{s})
					if want {
						if got != nil {
							t.Fatalf("got findings %+v, want none", got)
						}
						return
					}
					// Warn defaults to the enforced level; being the same, it is not repeated.
					if len(got) != 1 || got[0].Mode != PodSecurityEnforce {
						t.Fatalf("got %+v, want one enforce finding", got)
					}
					f := got[0]
					if f.Level != level || f.Version != version || f.Reason != "forbidden sysctls" || f.Detail != s || !reflect.DeepEqual(f.Sysctls, []string{s}) {
						t.Fatalf("got %+v", f)
					}
				})
			}
		}
	}
}

func TestPodSecurityOf(t *testing.T) {
	lv := func(mode PodSecurityMode, level, version string) PodSecurityLevel {
		minor := -1
		if version != "latest" {
			minor, _ = strconv.Atoi(strings.TrimPrefix(version, "v1."))
		}
		return PodSecurityLevel{Mode: mode, Level: level, Version: version, minor: minor}
	}
	priv := func(mode PodSecurityMode) PodSecurityLevel { return lv(mode, "privileged", "latest") }
	tests := map[string]struct {
		ns   Namespace
		want [3]PodSecurityLevel
	}{
		"a namespace without labels is privileged in every mode": {
			ns:   Namespace{Name: "a"},
			want: [3]PodSecurityLevel{priv(PodSecurityEnforce), priv(PodSecurityWarn), priv(PodSecurityAudit)},
		},
		"warn follows an enforced stricter level and its version": {
			ns:   psaNS(LabelPodSecurityEnforce, "baseline", LabelPodSecurityEnforceVersion, "v1.28"),
			want: [3]PodSecurityLevel{lv(PodSecurityEnforce, "baseline", "v1.28"), lv(PodSecurityWarn, "baseline", "v1.28"), priv(PodSecurityAudit)},
		},
		"an explicit warn version is kept when warn follows enforce": {
			ns:   psaNS(LabelPodSecurityEnforce, "restricted", LabelPodSecurityWarnVersion, "v1.30"),
			want: [3]PodSecurityLevel{lv(PodSecurityEnforce, "restricted", "latest"), lv(PodSecurityWarn, "restricted", "v1.30"), priv(PodSecurityAudit)},
		},
		"an explicit warn level is not overridden by enforce": {
			ns:   psaNS(LabelPodSecurityEnforce, "restricted", LabelPodSecurityWarn, "privileged", LabelPodSecurityAudit, "baseline"),
			want: [3]PodSecurityLevel{lv(PodSecurityEnforce, "restricted", "latest"), priv(PodSecurityWarn), lv(PodSecurityAudit, "baseline", "latest")},
		},
		"an invalid versions means latest": {
			ns:   psaNS(LabelPodSecurityEnforce, "baseline", LabelPodSecurityEnforceVersion, "1.28", LabelPodSecurityWarn, "baseline", LabelPodSecurityWarnVersion, "v1.028"),
			want: [3]PodSecurityLevel{lv(PodSecurityEnforce, "baseline", "latest"), lv(PodSecurityWarn, "baseline", "latest"), priv(PodSecurityAudit)},
		},
		"an invalid enforce level fails closed to restricted and warn stays privileged": {
			ns: psaNS(LabelPodSecurityEnforce, "Baseline"),
			want: [3]PodSecurityLevel{
				{Mode: PodSecurityEnforce, Level: "restricted", Version: "latest", minor: -1, invalid: "Baseline"},
				priv(PodSecurityWarn), priv(PodSecurityAudit),
			},
		},
		"invalid warn and audit levels fail open to privileged": {
			ns: psaNS(LabelPodSecurityWarn, "strict", LabelPodSecurityAudit, "strict"),
			want: [3]PodSecurityLevel{
				priv(PodSecurityEnforce),
				{Mode: PodSecurityWarn, Level: "privileged", Version: "latest", minor: -1, invalid: "strict"},
				{Mode: PodSecurityAudit, Level: "privileged", Version: "latest", minor: -1, invalid: "strict"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := PodSecurityOf(tc.ns).Levels; got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestEnforcedSysctlRestriction(t *testing.T) {
	t.Run("an exempt namespace has no findings and only an enforced level restricts", func(t *testing.T) {
		ns := psaNS(LabelPodSecurityEnforce, "restricted")
		ns.Annotations[AnnotationPodSecurityExempt] = "true"
		if got := CheckPodSecurity(ns, []string{"kernel.shmmax"}); got != nil {
			t.Fatalf("got %+v", got)
		}
		if _, ok := PodSecurityOf(ns).EnforcedSysctlRestriction(); ok {
			t.Fatal("an exempt namespace reported as restricting sysctls")
		}
		if l, ok := PodSecurityOf(psaNS(LabelPodSecurityEnforce, "baseline", LabelPodSecurityEnforceVersion, "v1.30")).EnforcedSysctlRestriction(); !ok || l.String() != "baseline:v1.30" {
			t.Fatalf("got %v %v, want baseline:v1.30", l, ok)
		}
		if _, ok := PodSecurityOf(psaNS(LabelPodSecurityWarn, "baseline")).EnforcedSysctlRestriction(); ok {
			t.Fatal("a namespace that only warns reported as enforcing")
		}
	})
}

func TestPodSecurityStep(t *testing.T) {
	cfg := loadTestConfig(t)
	f := false
	placedIPC := Changes{NodeSelector: map[string]string{gkePool: "ipc-tuned"}, Tolerations: []corev1.Toleration{tolIPC}}
	withAnnotation := func(ns Namespace, kv ...string) Namespace {
		for i := 0; i+1 < len(kv); i += 2 {
			ns.Annotations[kv[i]] = kv[i+1]
		}
		return ns
	}
	tests := map[string]struct {
		pod      *corev1.Pod
		ns       Namespace
		template bool

		outcome  Outcome
		reason   string
		denied   bool
		changes  Changes
		warnings []string
		// noWarning: no warning may contain it.
		noWarning string
		message   []string
		findings  []PodSecurityMode
		// notes are the audit's host-namespace notes, in order.
		notes []string
	}{
		"a pod asking for kernel.shmmax in a namespace enforcing baseline is denied before placement": {
			pod: newPod(sysctls("kernel.shmmax", "kernel.sem")), ns: psaNS(LabelPodSecurityEnforce, "baseline"),
			outcome: OutcomeForbidden, reason: ReasonPodSecurityForbidden, denied: true,
			warnings: []string{"Pod Security baseline:latest (enforce) forbids kernel.shmmax, kernel.sem", "fix: label the namespace pod-security.kubernetes.io/enforce=privileged"},
			message: []string{
				"namespace team-a enforces baseline:latest", `violates PodSecurity "baseline:latest": forbidden sysctls (kernel.shmmax, kernel.sem)`,
				"pod-security.kubernetes.io/enforce=privileged", "exempt it", "sysctl-placement.io/pod-security-exempt=true",
			},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"restricted forbids the same sysctls as baseline": {
			pod: newPod(sysctls("kernel.shmmax")), ns: psaNS(LabelPodSecurityEnforce, "restricted"),
			outcome: OutcomeForbidden, reason: ReasonPodSecurityForbidden, denied: true,
			message:  []string{"enforces restricted:latest", "forbidden sysctls (kernel.shmmax)"},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"under unplaceable warn the enforced level only warns and the pod is placed": {
			pod: newPod(sysctls("kernel.shmmax")), ns: withAnnotation(psaNS(LabelPodSecurityEnforce, "baseline"), AnnotationUnplaceable, "warn"),
			outcome: OutcomeChanged, reason: ReasonPlaced, changes: placedIPC,
			warnings: []string{"Pod Security baseline:latest (enforce) forbids kernel.shmmax", "fix: label the namespace", "placed on pool ipc-tuned"},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"a namespace enforcing privileged places the pod without a Pod Security warning": {
			pod: newPod(sysctls("kernel.shmmax")), ns: psaNS(LabelPodSecurityEnforce, "privileged"),
			outcome: OutcomeChanged, reason: ReasonPlaced, changes: placedIPC, noWarning: "Pod Security",
		},
		"a namespace declared exempt places the pod without a Pod Security warning": {
			pod: newPod(sysctls("kernel.shmmax")), ns: withAnnotation(psaNS(LabelPodSecurityEnforce, "baseline"), AnnotationPodSecurityExempt, "true"),
			outcome: OutcomeChanged, reason: ReasonPlaced, changes: placedIPC, noWarning: "Pod Security",
		},
		"an exemption annotation that is not true warns and does not exempt": {
			pod: newPod(sysctls("kernel.shmmax")), ns: withAnnotation(psaNS(LabelPodSecurityEnforce, "baseline"), AnnotationPodSecurityExempt, "yes"),
			outcome: OutcomeForbidden, reason: ReasonPodSecurityForbidden, denied: true,
			warnings: []string{`sysctl-placement.io/pod-security-exempt="yes" is invalid; use true or false`},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"a safe sysctl passes baseline:latest and needs nothing": {
			pod: newPod(sysctls("net.ipv4.ip_local_port_range")), ns: psaNS(LabelPodSecurityEnforce, "baseline"),
			outcome: OutcomeUnchanged, reason: ReasonSafeSysctlsOnly, noWarning: "Pod Security",
		},
		"a sysctl safe since 1.29 is forbidden by baseline pinned to v1.28 though newer kubelets allow it": {
			pod: newPod(sysctls("net.ipv4.tcp_keepalive_time")), ns: psaNS(LabelPodSecurityEnforce, "baseline", LabelPodSecurityEnforceVersion, "v1.28"),
			outcome: OutcomeForbidden, reason: ReasonPodSecurityForbidden, denied: true,
			message:  []string{"enforces baseline:v1.28", "forbidden sysctls (net.ipv4.tcp_keepalive_time)"},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"a safe sysctl written with slashes is forbidden by baseline, which compares names as written": {
			pod: newPod(sysctls("net/ipv4/ip_local_port_range")), ns: psaNS(LabelPodSecurityEnforce, "baseline"),
			outcome: OutcomeForbidden, reason: ReasonPodSecurityForbidden, denied: true,
			message:  []string{"forbidden sysctls (net/ipv4/ip_local_port_range)"},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"a namespace that only warns at baseline gets a warning and the pod is placed": {
			pod: newPod(sysctls("kernel.shmmax")), ns: psaNS(LabelPodSecurityWarn, "baseline"),
			outcome: OutcomeChanged, reason: ReasonPlaced, changes: placedIPC,
			warnings:  []string{"Pod Security baseline:latest (warn) forbids kernel.shmmax; enforcing it refuses the pod"},
			noWarning: "fix:", findings: []PodSecurityMode{PodSecurityWarn},
		},
		"a namespace that only audits at restricted gets a warning and the pod is placed": {
			pod: newPod(sysctls("kernel.shmmax")), ns: psaNS(LabelPodSecurityAudit, "restricted", LabelPodSecurityAuditVersion, "v1.30"),
			outcome: OutcomeChanged, reason: ReasonPlaced, changes: placedIPC,
			warnings: []string{"Pod Security restricted:v1.30 (audit) forbids kernel.shmmax"},
			findings: []PodSecurityMode{PodSecurityAudit},
		},
		"an invalid enforce level is enforced as restricted and the denial says so": {
			pod: newPod(sysctls("kernel.shmmax")), ns: psaNS(LabelPodSecurityEnforce, "base"),
			outcome: OutcomeForbidden, reason: ReasonPodSecurityForbidden, denied: true,
			message:  []string{`enforces restricted:latest (its label pod-security.kubernetes.io/enforce="base" is not a level`},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"a template in a namespace enforcing baseline is admitted with the warning": {
			pod: newPod(sysctls("kernel.shmmax")), ns: psaNS(LabelPodSecurityEnforce, "baseline"), template: true,
			outcome: OutcomeUnchanged, reason: ReasonTemplate,
			warnings: []string{"Pod Security baseline:latest (enforce) forbids kernel.shmmax", "fix: label the namespace"},
			findings: []PodSecurityMode{PodSecurityEnforce},
		},
		"strip turns hostIPC off and the audit says it also helps baseline": {
			pod: newPod(sysctls("kernel.shmmax"), hostIPC), ns: withAnnotation(psaNS(LabelPodSecurityEnforce, "baseline"), AnnotationUnplaceable, "warn"),
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes:  Changes{HostIPC: &f, NodeSelector: placedIPC.NodeSelector, Tolerations: placedIPC.Tolerations},
			findings: []PodSecurityMode{PodSecurityEnforce},
			notes:    []string{"hostIPC: false also helps Pod Security baseline:latest (enforce), which forbids host namespaces"},
		},
		"flag never strips to satisfy baseline; the audit notes baseline forbids hostIPC too": {
			pod: newPod(sysctls("kernel.shmmax"), hostIPC), ns: withAnnotation(psaNS(LabelPodSecurityEnforce, "baseline"), AnnotationHostIPC, "flag", AnnotationUnplaceable, "warn"),
			outcome: OutcomeChanged, reason: ReasonPlaced, changes: placedIPC,
			findings: []PodSecurityMode{PodSecurityEnforce},
			notes:    []string{"Pod Security baseline:latest (enforce) forbids hostIPC: true as well"},
		},
		"drop-sysctls leaves no sysctl for baseline to forbid but notes the kept hostIPC": {
			pod: newPod(sysctls("kernel.shmmax"), hostIPC), ns: withAnnotation(psaNS(LabelPodSecurityEnforce, "baseline"), AnnotationHostIPC, "drop-sysctls"),
			outcome: OutcomeChanged, reason: ReasonAllSysctlsDropped,
			changes:   Changes{DroppedSysctls: []string{"kernel.shmmax"}},
			noWarning: "Pod Security",
			notes:     []string{"Pod Security baseline:latest (enforce) forbids hostIPC: true as well"},
		},
		"strip in a privileged namespace adds no note": {
			pod: newPod(sysctls("kernel.shmmax"), hostIPC), ns: psaNS(LabelPodSecurityEnforce, "privileged"),
			outcome: OutcomeChanged, reason: ReasonPlaced,
			changes: Changes{HostIPC: &f, NodeSelector: placedIPC.NodeSelector, Tolerations: placedIPC.Tolerations},
			notes:   []string{""},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := Plan(Input{Pod: tc.pod, Namespace: tc.ns, Config: cfg, Template: tc.template})
			if d.Outcome != tc.outcome || d.Reason != tc.reason {
				t.Fatalf("got %s/%s, want %s/%s (message %q, warnings %q)", d.Outcome, d.Reason, tc.outcome, tc.reason, d.Message, d.Warnings)
			}
			if d.Allowed == tc.denied {
				t.Errorf("allowed = %v, want %v (message %q)", d.Allowed, !tc.denied, d.Message)
			}
			if !tc.denied && !reflect.DeepEqual(d.Changes, tc.changes) {
				t.Errorf("changes:\n got %+v\nwant %+v", d.Changes, tc.changes)
			}
			for _, w := range tc.warnings {
				if !containsSub(d.Warnings, w) {
					t.Errorf("no warning contains %q; got %q", w, d.Warnings)
				}
			}
			if tc.noWarning != "" && containsSub(d.Warnings, tc.noWarning) {
				t.Errorf("a warning contains %q; got %q", tc.noWarning, d.Warnings)
			}
			for _, w := range d.Warnings {
				if len(w) > maxWarningLen || strings.HasSuffix(w, "...") {
					t.Errorf("warning %q is clipped or too long", w)
				}
			}
			for _, m := range tc.message {
				if !strings.Contains(d.Message, m) {
					t.Errorf("message lacks %q:\n%s", m, d.Message)
				}
			}
			var modes []PodSecurityMode
			for _, f := range d.Audit.PodSecurity {
				modes = append(modes, f.Mode)
			}
			enforced := len(modes) > 0 && modes[0] == PodSecurityEnforce
			if got := slices.ContainsFunc(d.Warnings, IsEnforcedPodSecurityWarning); got != enforced {
				t.Errorf("IsEnforcedPodSecurityWarning finds one in %q: %v, want %v", d.Warnings, got, enforced)
			}
			if !slices.Equal(modes, tc.findings) {
				t.Errorf("audit findings %+v, want modes %v", d.Audit.PodSecurity, tc.findings)
			}
			var notes []string
			for _, h := range d.Audit.HostNamespaces {
				notes = append(notes, h.PodSecurity)
			}
			for _, h := range d.Audit.Flagged {
				notes = append(notes, h.PodSecurity)
			}
			if !slices.Equal(notes, tc.notes) {
				t.Errorf("host-namespace notes %q, want %q", notes, tc.notes)
			}
			assertIdempotent(t, tc.pod, tc.ns, cfg, tc.template, d)
		})
	}
}

func TestPodSecurityWarnings(t *testing.T) {
	t.Run("they stay on one line with many sysctls in every mode", func(t *testing.T) {
		cfg := loadTestConfig(t)
		pod := newPod(sysctls("kernel.shmmax", "kernel.shmall", "kernel.shm_next_id", "kernel.sem", "kernel.msgmax", "kernel.msgmnb"))
		for _, mode := range []string{LabelPodSecurityEnforce, LabelPodSecurityWarn, LabelPodSecurityAudit} {
			d := Plan(Input{Pod: pod, Namespace: psaNS(mode, "restricted", mode+"-version", "v1.30"), Config: cfg})
			if !containsSub(d.Warnings, "more") {
				t.Errorf("%s: the sysctl list was not shortened: %q", mode, d.Warnings)
			}
			for _, w := range d.Warnings {
				if len(w) > maxWarningLen {
					t.Errorf("%s: warning %q is %d bytes", mode, w, len(w))
				}
			}
		}
	})
}

func TestPodSecurityFindings(t *testing.T) {
	t.Run("each distinct level and version is reported once", func(t *testing.T) {
		ns := psaNS(LabelPodSecurityEnforce, "baseline", LabelPodSecurityEnforceVersion, "v1.28",
			LabelPodSecurityWarn, "restricted", LabelPodSecurityAudit, "baseline", LabelPodSecurityAuditVersion, "v1.28")
		got := CheckPodSecurity(ns, []string{"net.ipv4.tcp_keepalive_time", "kernel.shmmax"})
		var modes []string
		for _, f := range got {
			modes = append(modes, string(f.Mode)+"="+f.String()+"/"+f.Detail)
		}
		want := []string{"enforce=baseline:v1.28/net.ipv4.tcp_keepalive_time, kernel.shmmax", "warn=restricted:latest/kernel.shmmax"}
		if !slices.Equal(modes, want) {
			t.Fatalf("got %q, want %q", modes, want)
		}
	})
}

func TestPodSecuritySummary(t *testing.T) {
	t.Run("it counts workloads in the singular and the plural", func(t *testing.T) {
		l, _ := PodSecurityOf(psaNS(LabelPodSecurityEnforce, "restricted", LabelPodSecurityEnforceVersion, "v1.30")).EnforcedSysctlRestriction()
		for n, want := range map[int]string{
			1: "namespace shop enforces Pod Security restricted:v1.30: 1 workload with unsafe sysctls can never run there",
			4: "namespace shop enforces Pod Security restricted:v1.30: 4 workloads with unsafe sysctls can never run there",
		} {
			if got := PodSecuritySummary("shop", l, n); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		}
	})
}

func TestPodSecurityCost(t *testing.T) {
	t.Run("reading a namespace's Pod Security labels allocates nothing", func(t *testing.T) {
		for _, ns := range []Namespace{
			enabledNS("plain", nil),
			psaNS(LabelPodSecurityEnforce, "baseline", LabelPodSecurityWarn, "restricted", LabelPodSecurityAudit, "restricted"),
		} {
			if n := testing.AllocsPerRun(100, func() { PodSecurityOf(ns) }); n != 0 {
				t.Errorf("labels %v: %v allocations per read", ns.Labels, n)
			}
		}
	})
	t.Run("a namespace without Pod Security labels adds no allocation to Plan", func(t *testing.T) {
		cfg := loadTestConfig(t)
		pod := newPod(sysctls("kernel.shmmax", "kernel.sem"))
		plainNS, privilegedNS := enabledNS("team-a", nil), psaNS(LabelPodSecurityEnforce, "privileged")
		plain := testing.AllocsPerRun(100, func() { Plan(Input{Pod: pod, Namespace: plainNS, Config: cfg}) })
		privileged := testing.AllocsPerRun(100, func() { Plan(Input{Pod: pod, Namespace: privilegedNS, Config: cfg}) })
		if privileged != plain {
			t.Errorf("Plan allocates %v times in a privileged namespace, %v without labels", privileged, plain)
		}
		t.Logf("Plan allocations: %v without labels, %v with enforce=privileged", plain, privileged)
	})
}
