package chartcheck

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	release "helm.sh/helm/v4/pkg/release/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
)

// `helm test` runs `sysctl-placement doctor` in a namespace it makes to opt in: the
// namespace must match whatever webhook.namespaceSelector says, and the test's
// ServiceAccount may read the two configurations and create pods there, nothing else.
func TestHelmTestRunsDoctorInANamespaceThatOptsIn(t *testing.T) {
	for _, tc := range []struct {
		name     string
		selector map[string]any
	}{
		{"the default selector", nil},
		{"a selector of the admin's", map[string]any{
			"matchLabels": map[string]any{"team": "databases"},
			"matchExpressions": []any{
				map[string]any{"key": "tier", "operator": "In", "values": []any{"gold", "silver"}},
				map[string]any{"key": "sysctls", "operator": "Exists"},
				map[string]any{"key": "frozen", "operator": "DoesNotExist"},
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values := map[string]any{"tests": map[string]any{"sysctl": "kernel.sem=250 32000 100 128"}}
			if tc.selector != nil {
				values["webhook"] = map[string]any{"namespaceSelector": tc.selector}
			}
			hooks := hooksAt(t, values, release.HookTest)
			pod, ok := hooks["Pod/sysctl-placement-test"]
			if !ok {
				t.Fatalf("no test hook Pod sysctl-placement-test; test hooks: %v", slices.Sorted(maps.Keys(hooks)))
			}
			wantArgs := []string{"doctor", "--test-namespace", "sysctl-placement-doctor", "--sysctl", "kernel.sem=250 32000 100 128", "--mutating-webhook", "sysctl-placement", "--validating-webhook", "sysctl-placement", "--log-format", "text"}
			if d := cmp.Diff(wantArgs, containerArgs(pod.obj)); d != "" {
				t.Errorf("the Pod's args (-want +got):\n%s", d)
			}
			if rp := pod.obj.Object["spec"].(map[string]any)["restartPolicy"]; rp != "Never" {
				t.Errorf("restartPolicy %v, want Never: a failed check must fail the test, not restart", rp)
			}
			ns, ok := hooks["Namespace/sysctl-placement-doctor"]
			if !ok || ns.Weight >= pod.Weight {
				t.Fatalf("want the Namespace sysctl-placement-doctor as a test hook before the Pod")
			}
			// The selector the webhook configurations carry is the one to match.
			var cfgSel *metav1.LabelSelector
			for _, o := range render(t, values) {
				if o.GetKind() == "MutatingWebhookConfiguration" {
					whs, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
					var sel metav1.LabelSelector
					if err := runtime.DefaultUnstructuredConverter.FromUnstructured(whs[0].(map[string]any)["namespaceSelector"].(map[string]any), &sel); err != nil {
						t.Fatal(err)
					}
					cfgSel = &sel
				}
			}
			selector, err := metav1.LabelSelectorAsSelector(cfgSel)
			if err != nil {
				t.Fatal(err)
			}
			nsLabels := labels.Set{"kubernetes.io/metadata.name": ns.obj.GetName()}
			maps.Copy(nsLabels, ns.obj.GetLabels())
			if !selector.Matches(nsLabels) {
				t.Errorf("the test namespace's labels %v do not match the webhooks' namespaceSelector %s", nsLabels, selector)
			}
			if nsLabels["pod-security.kubernetes.io/enforce"] != "privileged" {
				t.Errorf("the test namespace enforces %q, want privileged: the check is about the webhook", nsLabels["pod-security.kubernetes.io/enforce"])
			}
			wantRules := map[string][]any{
				"ClusterRole/sysctl-placement-test": {map[string]any{"apiGroups": []any{"admissionregistration.k8s.io"}, "resources": []any{"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}, "resourceNames": []any{"sysctl-placement"}, "verbs": []any{"get"}}},
				"Role/sysctl-placement-test":        {map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"create"}}},
			}
			for k, want := range wantRules {
				h, ok := hooks[k]
				if !ok {
					t.Errorf("no test hook %s", k)
					continue
				}
				if d := cmp.Diff(want, h.obj.Object["rules"]); d != "" {
					t.Errorf("%s rules (-want +got):\n%s", k, d)
				}
			}
			if role := hooks["Role/sysctl-placement-test"]; role.obj != nil && role.obj.GetNamespace() != "sysctl-placement-doctor" {
				t.Errorf("the Role that lets the test create pods is in %q, want only the test namespace", role.obj.GetNamespace())
			}
		})
	}
	t.Run("a tests.sysctl that is not name=value is refused", func(t *testing.T) {
		refused(t, map[string]any{"tests": map[string]any{"sysctl": "kernel.msgmax"}}, "tests", "sysctl")
	})
}

// webhook.objectSelector narrows every entry of both configurations.
func TestObjectSelectorReachesEveryWebhook(t *testing.T) {
	sel := map[string]any{"matchExpressions": []any{map[string]any{"key": "sysctl-placement.io/skip", "operator": "DoesNotExist"}}}
	n := 0
	for _, o := range render(t, map[string]any{"webhook": map[string]any{"objectSelector": sel}}) {
		whs, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
		for _, wh := range whs {
			w := wh.(map[string]any)
			n++
			if d := cmp.Diff(sel, w["objectSelector"]); d != "" {
				t.Errorf("%s webhook %v objectSelector (-want +got):\n%s", key(o), w["name"], d)
			}
		}
	}
	if n != 8 {
		t.Errorf("%d webhooks, want 8 (four entries in each configuration)", n)
	}
	t.Run("an operator Kubernetes does not know is refused", func(t *testing.T) {
		refused(t, map[string]any{"webhook": map[string]any{"objectSelector": map[string]any{"matchExpressions": []any{map[string]any{"key": "a", "operator": "Matches"}}}}}, "objectSelector", "operator")
	})
}

func TestNotesSayHowToCheckTheInstall(t *testing.T) {
	notes := install(t, nil).Info.Notes
	if !strings.Contains(notes, "helm test sysctl-placement -n sysctl-placement --logs") || !strings.Contains(notes, "kernel.msgmax=65536") {
		t.Errorf("NOTES.txt:\n%s\nwant the helm test command and the sysctl it asks for", notes)
	}
}
