// Package podsecurity proves that sysctl-placement's Pod Security check (package
// scheduling, which must not depend on k8s.io/pod-security-admission) answers exactly
// what Pod Security Admission's own code answers, at every version and level, so the
// safe-sysctl table and PSA's allowed lists cannot drift apart.
package podsecurity

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// psaForbiddenSysctls runs PSA's evaluator, as the API server's PodSecurity plugin
// does, and returns what its sysctls check forbids (nil when it allows everything).
func psaForbiddenSysctls(t *testing.T, e policy.Evaluator, lv api.LevelVersion, sysctls []string) []string {
	t.Helper()
	spec := corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{}}
	for _, s := range sysctls {
		spec.SecurityContext.Sysctls = append(spec.SecurityContext.Sysctls, corev1.Sysctl{Name: s, Value: "1"})
	}
	for _, r := range e.EvaluatePod(lv, &metav1.ObjectMeta{}, &spec) {
		if !r.Allowed && r.ForbiddenReason == "forbidden sysctls" {
			return strings.Split(r.ForbiddenDetail, ", ")
		}
	}
	return nil
}

func TestPodSecurity(t *testing.T) {
	t.Run("our check answers what Pod Security Admission answers", func(t *testing.T) {
		e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
		if err != nil {
			t.Fatal(err)
		}
		// Every safe sysctl of the newest kubelet, the same written with slashes (PSA
		// compares names as written), and unsafe ones.
		candidates, err := scheduling.SafeSysctls("", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(candidates) < 14 {
			t.Fatalf("only %d safe sysctls; the table lost rows", len(candidates))
		}
		candidates = append(candidates, "net/ipv4/ip_local_port_range", "kernel.shmmax", "kernel.sem", "kernel.msgmax", "net.core.somaxconn", "fs.mqueue.msg_max", "vm.swappiness")

		versions := []string{"latest"}
		for minor := 0; minor <= 40; minor++ {
			versions = append(versions, fmt.Sprintf("v1.%d", minor))
		}
		for _, level := range []api.Level{api.LevelPrivileged, api.LevelBaseline, api.LevelRestricted} {
			for _, version := range versions {
				t.Run(string(level)+":"+version, func(t *testing.T) {
					v, err := api.ParseVersion(version)
					if err != nil {
						t.Fatal(err)
					}
					lv := api.LevelVersion{Level: level, Version: v}
					ns := scheduling.Namespace{Name: "n", Labels: map[string]string{
						scheduling.LabelPodSecurityEnforce: string(level), scheduling.LabelPodSecurityEnforceVersion: version,
					}}
					for _, s := range candidates {
						want := psaForbiddenSysctls(t, e, lv, []string{s})
						var got []string
						if f := scheduling.CheckPodSecurity(ns, []string{s}); len(f) > 0 {
							got = f[0].Sysctls
							if f[0].Mode != scheduling.PodSecurityEnforce || f[0].String() != lv.String() {
								t.Errorf("%s: our finding is for %s %s, want enforce %s", s, f[0].Mode, f[0], lv)
							}
						}
						if !slices.Equal(got, want) {
							t.Errorf("%s: we forbid %q, Pod Security Admission forbids %q", s, got, want)
						}
					}
					// All at once: the same list in the same order as PSA's message.
					want := psaForbiddenSysctls(t, e, lv, candidates)
					var got []string
					if f := scheduling.CheckPodSecurity(ns, candidates); len(f) > 0 {
						got = f[0].Sysctls
						if f[0].Detail != strings.Join(want, ", ") {
							t.Errorf("our detail %q, PSA's %q", f[0].Detail, strings.Join(want, ", "))
						}
					}
					if !slices.Equal(got, want) {
						t.Errorf("we forbid %q, Pod Security Admission forbids %q", got, want)
					}
				})
			}
		}
	})
	t.Run("our reading of the namespace labels is Pod Security Admission's", func(t *testing.T) {
		defaults := api.Policy{
			Enforce: api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
			Warn:    api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
			Audit:   api.LevelVersion{Level: api.LevelPrivileged, Version: api.LatestVersion()},
		}
		levels := []string{"", "privileged", "baseline", "restricted", "Baseline", "bogus"}
		versions := []string{"", "latest", "v1.28", "v1.0", "v1.028", "1.28", "v2.1", "v1.99999999999999999999"}
		cases := 0
		for _, enforce := range levels {
			for _, enforceVersion := range versions {
				for _, warn := range []string{"", "privileged", "restricted", "bogus"} {
					for _, warnVersion := range []string{"", "v1.30", "nope"} {
						for _, audit := range []string{"", "baseline", "bogus"} {
							labels := map[string]string{}
							set := func(k, v string) {
								if v != "" {
									labels[k] = v
								}
							}
							set(api.EnforceLevelLabel, enforce)
							set(api.EnforceVersionLabel, enforceVersion)
							set(api.WarnLevelLabel, warn)
							set(api.WarnVersionLabel, warnVersion)
							set(api.AuditLevelLabel, audit)
							psa, _ := api.PolicyToEvaluate(labels, defaults)
							ours := scheduling.PodSecurityOf(scheduling.Namespace{Name: "n", Labels: labels}).Levels
							for i, want := range []api.LevelVersion{psa.Enforce, psa.Warn, psa.Audit} {
								if got := ours[i]; got.Level != string(want.Level) || got.Version != want.Version.String() {
									t.Errorf("labels %v: our %s is %s, Pod Security Admission evaluates %s", labels, got.Mode, got, want)
								}
							}
							cases++
						}
					}
				}
			}
		}
		t.Logf("%d label combinations agree", cases)
	})
}
