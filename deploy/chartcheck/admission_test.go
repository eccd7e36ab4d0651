package chartcheck

import (
	"maps"
	"slices"
	"strings"
	"testing"
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
