package chartcheck

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// policyBackend is the values of the policy backend, with webhookConfigurations as given.
func policyBackend(webhookConfigurations any) map[string]any {
	return map[string]any{"admission": map[string]any{"backend": "policy", "webhookConfigurations": webhookConfigurations}}
}

// In policy mode an admin who deleted the webhook configurations by hand saw the next
// helm upgrade re-create them, without caBundle until the post-upgrade hook patched it,
// refusing opted-in pods in between: the value leaves them out of the release instead.
func TestWebhookConfigurationsValue(t *testing.T) {
	t.Run("false with the policy backend renders no webhook configuration", func(t *testing.T) {
		for _, o := range renderAll(t, policyBackend(false)) {
			if k := o.GetKind(); k == "MutatingWebhookConfiguration" || k == "ValidatingWebhookConfiguration" {
				t.Errorf("%s %s rendered; want none", k, o.GetName())
			}
		}
	})
	t.Run("false: certs patches no configuration and may read none", func(t *testing.T) {
		certsRuns := 0
		for _, o := range renderAll(t, policyBackend(false)) {
			if o.GetName() == "sysctl-placement-certs" && (o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding") {
				t.Errorf("%s %s rendered; want none, there is no configuration to patch", o.GetKind(), o.GetName())
			}
			args := containerArgs(o)
			if len(args) == 0 || args[0] != "certs" {
				continue
			}
			certsRuns++
			for _, flag := range []string{"--mutating-webhook", "--validating-webhook"} {
				if v, ok := certsFlag(args, flag); !ok || v != "" {
					t.Errorf("%s %s: %s %q; want it passed empty (certs refuses a configuration it cannot find)", o.GetKind(), o.GetName(), flag, v)
				}
			}
		}
		if certsRuns != 3 {
			t.Errorf("found %d certs Jobs and CronJobs; want 3 (init hook, post-install hook, renewal)", certsRuns)
		}
	})
	t.Run("false: no pre-delete hook, there is nothing to delete first", func(t *testing.T) {
		if hooks := preDeleteHooks(t, policyBackend(false)); len(hooks) != 0 {
			t.Errorf("pre-delete hooks %v; want none", slices.Sorted(maps.Keys(hooks)))
		}
	})
	t.Run("true with the policy backend keeps both configurations", func(t *testing.T) {
		var kinds []string
		for _, o := range renderAll(t, policyBackend(true)) {
			if k := o.GetKind(); strings.HasSuffix(k, "WebhookConfiguration") {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) != 2 {
			t.Errorf("webhook configurations %v; want both", kinds)
		}
	})
	t.Run("false with the webhook backend is refused, naming the value", func(t *testing.T) {
		refused(t, map[string]any{"admission": map[string]any{"webhookConfigurations": false}}, "admission.webhookConfigurations=false", "admission.backend=policy")
	})
	t.Run("a webhookConfigurations that is not a boolean is refused, naming it", func(t *testing.T) {
		refused(t, policyBackend("no"), "webhookConfigurations")
	})
}

// After helm upgrade --set admission.backend=webhook the policies the policy backend
// applied are in no manifest and stay, placing pods by the last config ahead of the
// webhook (mutating admission policies run before mutating webhooks). With the webhook
// backend a hook deletes them after every install, upgrade and rollback.
func TestStalePoliciesHook(t *testing.T) {
	const name = "sysctl-placement-stale-policies"
	events := []release.HookEvent{release.HookPostInstall, release.HookPostUpgrade, release.HookPostRollback}
	t.Run("with the webhook backend, a hook deletes the policies after install, upgrade and rollback", func(t *testing.T) {
		for _, event := range events {
			hooks := hooksAt(t, nil, event)
			job, ok := hooks["Job/"+name]
			if !ok {
				t.Fatalf("no %s Job %s; %s hooks: %v", event, name, event, slices.Sorted(maps.Keys(hooks)))
			}
			if d := cmp.Diff([]string{"uninstall-cleanup", "--admission-policies"}, containerArgs(job.obj)); d != "" {
				t.Errorf("the Job's args (-want +got):\n%s", d)
			}
			if sa, _, _ := unstructured.NestedString(job.obj.Object, "spec", "template", "spec", "serviceAccountName"); sa != name {
				t.Errorf("the Job runs as %q; want its own ServiceAccount %s", sa, name)
			}
			for _, k := range []string{"ServiceAccount/" + name, "ClusterRole/" + name, "ClusterRoleBinding/" + name} {
				if h, ok := hooks[k]; !ok || h.Weight >= job.Weight {
					t.Errorf("%s: want a %s hook weighted before the Job", k, event)
				}
			}
			for k, h := range hooks {
				if !strings.HasSuffix(k, "/"+name) {
					continue
				}
				if d := cmp.Diff([]release.HookDeletePolicy{release.HookBeforeHookCreation, release.HookSucceeded}, h.DeletePolicies); d != "" {
					t.Errorf("%s: delete policies (-want +got):\n%s", k, d)
				}
			}
		}
	})
	t.Run("its ServiceAccount may get and delete the six policies by name, the post-delete hook's rules", func(t *testing.T) {
		hooks := hooksAt(t, nil, release.HookPostUpgrade)
		postDelete := hooksAt(t, nil, release.HookPostDelete)
		want := postDelete["ClusterRole/sysctl-placement-cleanup"].obj.Object["rules"]
		if d := cmp.Diff(want, hooks["ClusterRole/"+name].obj.Object["rules"]); d != "" || want == nil {
			t.Errorf("the ClusterRole's rules differ from the post-delete hook's %v (-want +got):\n%s", want, d)
		}
		subjects, _, _ := unstructured.NestedSlice(hooks["ClusterRoleBinding/"+name].obj.Object, "subjects")
		if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != name {
			t.Errorf("the ClusterRoleBinding binds %v; want the Job's ServiceAccount %s only", subjects, name)
		}
		if roles := slices.DeleteFunc(slices.Collect(maps.Keys(hooks)), func(k string) bool {
			return !strings.HasPrefix(k, "Role") || !strings.HasSuffix(k, "/"+name)
		}); len(roles) != 0 {
			t.Errorf("namespaced RBAC %v; want none", roles)
		}
	})
	t.Run("with the policy backend there is no such hook", func(t *testing.T) {
		for _, event := range events {
			if h, ok := hooksAt(t, policyBackend(true), event)["Job/"+name]; ok {
				t.Errorf("%s hook %s rendered with the policy backend", event, h.obj.GetName())
			}
		}
	})
	t.Run("admission.deleteStalePolicies false renders no such hook", func(t *testing.T) {
		for _, event := range events {
			if _, ok := hooksAt(t, map[string]any{"admission": map[string]any{"deleteStalePolicies": false}}, event)["Job/"+name]; ok {
				t.Errorf("%s hook %s rendered", event, name)
			}
		}
	})
}
