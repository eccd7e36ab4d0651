package chartcheck

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// preDeleteHooks are the rendered pre-delete hooks by kind/name.
func preDeleteHooks(t *testing.T, values map[string]any) map[string]hooked {
	t.Helper()
	return hooksAt(t, values, release.HookPreDelete)
}

// hooksAt are the rendered hooks that run at event, by kind/name.
func hooksAt(t *testing.T, values map[string]any, event release.HookEvent) map[string]hooked {
	t.Helper()
	rel := install(t, values)
	out := map[string]hooked{}
	for _, h := range rel.Hooks {
		if !slices.Contains(h.Events, event) {
			continue
		}
		for _, o := range decode(t, h.Manifest) {
			out[o.GetKind()+"/"+o.GetName()] = hooked{h, o}
		}
	}
	return out
}

func TestUninstall(t *testing.T) {
	// helm uninstall deletes the Deployment and Service in no useful order: while the
	// webhook configurations outlive them, pods in opted-in namespaces are refused
	// (failurePolicy Fail). A pre-delete hook deletes both configurations first.
	t.Run("a pre-delete hook deletes the webhook configurations first", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			values map[string]any
			want   string
		}{
			{"by default, in self-signed mode", nil, "sysctl-placement"},
			{"in cert-manager mode", map[string]any{"certificates": map[string]any{"mode": "cert-manager"}}, "sysctl-placement"},
			{"with fullnameOverride", map[string]any{"fullnameOverride": "sysctls"}, "sysctls"},
		} {
			t.Run("the pre-delete hook deletes exactly the two configurations, "+tc.name, func(t *testing.T) {
				resources := byKey(decode(t, install(t, tc.values).Manifest))
				for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
					if resources[fmt.Sprintf("%s /%s", kind, tc.want)] == nil {
						t.Fatalf("no %s %s rendered", kind, tc.want)
					}
				}
				hooks := preDeleteHooks(t, tc.values)
				job, ok := hooks["Job/"+tc.want+"-uninstall"]
				if !ok {
					t.Fatalf("no pre-delete hook Job %s-uninstall; pre-delete hooks: %v", tc.want, slices.Sorted(maps.Keys(hooks)))
				}
				wantArgs := []string{"uninstall-webhooks", "--mutating-webhook", tc.want, "--validating-webhook", tc.want}
				if d := cmp.Diff(wantArgs, containerArgs(job.obj)); d != "" {
					t.Errorf("the Job's args (-want +got):\n%s", d)
				}
				if !slices.Contains(job.DeletePolicies, release.HookBeforeHookCreation) || !slices.Contains(job.DeletePolicies, release.HookSucceeded) {
					t.Errorf("the Job has delete policies %v, want before-hook-creation and hook-succeeded", job.DeletePolicies)
				}

				sa, _, _ := unstructured.NestedString(job.obj.Object, "spec", "template", "spec", "serviceAccountName")
				// The Job's identity is a hook too, made before it and gone after it.
				before := func(k string) hooked {
					t.Helper()
					h, ok := hooks[k]
					switch {
					case !ok:
						t.Errorf("%s is no pre-delete hook: the Job's RBAC must exist when it runs", k)
					case h.Weight >= job.Weight:
						t.Errorf("%s has hook weight %d, want it lower than the Job's %d", k, h.Weight, job.Weight)
					case !slices.Contains(h.DeletePolicies, release.HookBeforeHookCreation) || !slices.Contains(h.DeletePolicies, release.HookSucceeded):
						t.Errorf("%s has delete policies %v, want before-hook-creation and hook-succeeded", k, h.DeletePolicies)
					}
					return h
				}
				before("ServiceAccount/" + sa)
				binding := before("ClusterRoleBinding/" + tc.want + "-uninstall")
				if binding.obj == nil {
					return
				}
				subjects, _, _ := unstructured.NestedSlice(binding.obj.Object, "subjects")
				if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != sa {
					t.Errorf("the ClusterRoleBinding binds %v, want the Job's ServiceAccount %s only", subjects, sa)
				}
				roleName, _, _ := unstructured.NestedString(binding.obj.Object, "roleRef", "name")
				role := before("ClusterRole/" + roleName)
				if role.obj == nil {
					return
				}
				// Delete, on these two objects by name, and nothing else.
				wantRules := []any{map[string]any{
					"apiGroups":     []any{"admissionregistration.k8s.io"},
					"resources":     []any{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"},
					"resourceNames": []any{tc.want},
					"verbs":         []any{"delete"},
				}}
				if d := cmp.Diff(wantRules, role.obj.Object["rules"]); d != "" {
					t.Errorf("the ClusterRole %s grants (-want +got):\n%s", roleName, d)
				}
			})
		}
		t.Run("uninstall.removeWebhooksFirst false renders no pre-delete hook", func(t *testing.T) {
			if hooks := preDeleteHooks(t, map[string]any{"uninstall": map[string]any{"removeWebhooksFirst": false}}); len(hooks) != 0 {
				t.Errorf("pre-delete hooks rendered: %v", slices.Sorted(maps.Keys(hooks)))
			}
		})
		t.Run("a removeWebhooksFirst that is not a boolean is refused, naming it", func(t *testing.T) {
			refused(t, map[string]any{"uninstall": map[string]any{"removeWebhooksFirst": "yes"}}, "uninstall", "removeWebhooksFirst")
		})
	})

	// After Helm has deleted the release, a post-delete Job deletes what no manifest holds
	// (the Secrets certs made, the replicas' Leases, the policy backend's admission
	// policies), with a ServiceAccount that may delete exactly those objects by name.
	t.Run("a post-delete job deletes the secrets and leases the webhook made", func(t *testing.T) {
		leases := map[string]any{
			"apiGroups":     []any{"coordination.k8s.io"},
			"resources":     []any{"leases"},
			"resourceNames": []any{"sysctl-placement-discovery", "sysctl-placement-audit-events"},
			"verbs":         []any{"delete"},
		}
		policyRules := []any{
			map[string]any{
				"apiGroups":     []any{"admissionregistration.k8s.io"},
				"resources":     []any{"mutatingadmissionpolicies", "mutatingadmissionpolicybindings"},
				"resourceNames": []any{"sysctl-placement"},
				"verbs":         []any{"get", "delete"},
			},
			map[string]any{
				"apiGroups":     []any{"admissionregistration.k8s.io"},
				"resources":     []any{"validatingadmissionpolicies", "validatingadmissionpolicybindings"},
				"resourceNames": []any{"sysctl-placement", "sysctl-placement-warnings"},
				"verbs":         []any{"get", "delete"},
			},
		}
		for _, tc := range []struct {
			name     string
			values   map[string]any
			wantArgs []string
			rules    []any
		}{
			{"self-signed: both Secrets and both Leases", nil,
				[]string{"uninstall-cleanup", "--namespace", "sysctl-placement", "--secret", "sysctl-placement-tls", "--secret", "sysctl-placement-ca", "--lease", "sysctl-placement-discovery", "--lease", "sysctl-placement-audit-events", "--admission-policies"},
				[]any{map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "resourceNames": []any{"sysctl-placement-tls", "sysctl-placement-ca"}, "verbs": []any{"delete"}}, leases}},
			{"cert-manager keeps its Secret: the Leases only", map[string]any{"certificates": map[string]any{"mode": "cert-manager"}},
				[]string{"uninstall-cleanup", "--namespace", "sysctl-placement", "--lease", "sysctl-placement-discovery", "--lease", "sysctl-placement-audit-events", "--admission-policies"},
				[]any{leases}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hooks := hooksAt(t, tc.values, release.HookPostDelete)
				job, ok := hooks["Job/sysctl-placement-cleanup"]
				if !ok {
					t.Fatalf("no post-delete Job sysctl-placement-cleanup; post-delete hooks: %v", slices.Sorted(maps.Keys(hooks)))
				}
				if d := cmp.Diff(tc.wantArgs, containerArgs(job.obj)); d != "" {
					t.Errorf("the Job's args (-want +got):\n%s", d)
				}
				for _, k := range []string{"ServiceAccount/sysctl-placement-cleanup", "Role/sysctl-placement-cleanup", "RoleBinding/sysctl-placement-cleanup",
					"ClusterRole/sysctl-placement-cleanup", "ClusterRoleBinding/sysctl-placement-cleanup"} {
					if h, ok := hooks[k]; !ok || h.Weight >= job.Weight {
						t.Errorf("%s: want a post-delete hook weighted before the Job", k)
					}
				}
				if d := cmp.Diff(tc.rules, hooks["Role/sysctl-placement-cleanup"].obj.Object["rules"]); d != "" {
					t.Errorf("the Role's rules (-want +got):\n%s", d)
				}
				// The admission policies are cluster-scoped: get (to check the label) and
				// delete, on the six by name, and nothing else.
				if d := cmp.Diff(policyRules, hooks["ClusterRole/sysctl-placement-cleanup"].obj.Object["rules"]); d != "" {
					t.Errorf("the ClusterRole's rules (-want +got):\n%s", d)
				}
				if cr, ok := hooks["ClusterRoleBinding/sysctl-placement-cleanup"]; ok {
					subjects, _, _ := unstructured.NestedSlice(cr.obj.Object, "subjects")
					if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != "sysctl-placement-cleanup" {
						t.Errorf("the ClusterRoleBinding binds %v, want the Job's ServiceAccount sysctl-placement-cleanup only", subjects)
					}
				}
			})
		}
		t.Run("uninstall.deleteSecretsAndLeases false renders no post-delete hook", func(t *testing.T) {
			if hooks := hooksAt(t, map[string]any{"uninstall": map[string]any{"deleteSecretsAndLeases": false}}, release.HookPostDelete); len(hooks) != 0 {
				t.Errorf("post-delete hooks %v, want none", slices.Sorted(maps.Keys(hooks)))
			}
		})
	})
}

func TestNotesSayHowToUninstall(t *testing.T) {
	manual := "kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration sysctl-placement"
	t.Run("with the pre-delete hook, helm uninstall alone", func(t *testing.T) {
		notes := install(t, nil).Info.Notes
		if !strings.Contains(notes, "helm uninstall sysctl-placement -n sysctl-placement") || strings.Contains(notes, manual) {
			t.Errorf("NOTES.txt:\n%s\nwant helm uninstall without the manual deletion", notes)
		}
	})
	t.Run("without it, the configurations by hand first", func(t *testing.T) {
		notes := install(t, map[string]any{"uninstall": map[string]any{"removeWebhooksFirst": false}}).Info.Notes
		if i, j := strings.Index(notes, manual), strings.Index(notes, "helm uninstall"); i < 0 || j < i {
			t.Errorf("NOTES.txt:\n%s\nwant %q before helm uninstall", notes, manual)
		}
	})
}

func TestNotesSayHowToRunPolicyMode(t *testing.T) {
	deleteConfigurations := "kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration sysctl-placement"
	leaveOut := "--set admission.webhookConfigurations=false"
	// Deleting them by hand lasted until the next helm upgrade re-created them, without
	// caBundle until its post-upgrade hook patched it: the notes say to leave them out
	// of the release instead.
	t.Run("with admission.backend policy, wait for pools to say in force, then leave the configurations out", func(t *testing.T) {
		notes := install(t, map[string]any{"admission": map[string]any{"backend": "policy"}}).Info.Notes
		if i, j := strings.Index(notes, "Policy backend: in force"), strings.Index(notes, leaveOut); i < 0 || j < i {
			t.Errorf("NOTES.txt:\n%s\nwant pools' \"in force\" before %q", notes, leaveOut)
		}
		if strings.Contains(notes, deleteConfigurations) {
			t.Errorf("NOTES.txt:\n%s\nsays to delete the configurations by hand, which the next upgrade undoes", notes)
		}
	})
	t.Run("with the configurations left out, how to put them back should the policies be refused", func(t *testing.T) {
		notes := install(t, policyBackend(false)).Info.Notes
		if !strings.Contains(notes, "--set admission.webhookConfigurations=true") || strings.Contains(notes, leaveOut) || strings.Contains(notes, deleteConfigurations) {
			t.Errorf("NOTES.txt:\n%s\nwant how to set admission.webhookConfigurations=true, and no deletion", notes)
		}
	})
	t.Run("with the webhook backend, the notes never say to delete the configurations", func(t *testing.T) {
		if notes := install(t, nil).Info.Notes; strings.Contains(notes, deleteConfigurations) || strings.Contains(notes, "Policy backend") {
			t.Errorf("NOTES.txt:\n%s\nwant no policy-backend steps", notes)
		}
	})
}
