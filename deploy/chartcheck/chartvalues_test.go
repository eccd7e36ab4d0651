package chartcheck

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// renderAll is render with the hooks of every event, pre-delete included, as objects.
func renderAll(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	rel := install(t, values)
	objs := decode(t, rel.Manifest)
	for _, h := range rel.Hooks {
		objs = append(objs, decode(t, h.Manifest)...)
	}
	return objs
}

// Every object carries the labels tools and dashboards select Helm releases by.
func TestEveryObjectHasTheStandardLabels(t *testing.T) {
	values := map[string]any{
		"namespace":     map[string]any{"create": true},
		"networkPolicy": map[string]any{"enabled": true},
		"monitoring": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
			"dashboard":      map[string]any{"enabled": true},
		},
	}
	for _, mode := range []string{"self-signed", "cert-manager"} {
		values["certificates"] = map[string]any{"mode": mode}
		for _, o := range renderAll(t, values) {
			for l, want := range map[string]string{
				"app.kubernetes.io/name":       "sysctl-placement",
				"app.kubernetes.io/instance":   DefaultRelease.Name,
				"app.kubernetes.io/version":    "v0.1.0",
				"app.kubernetes.io/part-of":    "sysctl-placement",
				"app.kubernetes.io/managed-by": "Helm",
				"helm.sh/chart":                "sysctl-placement-0.1.0",
			} {
				if got := o.GetLabels()[l]; got != want {
					t.Errorf("%s (%s mode): label %s = %q, want %q", key(o), mode, l, got, want)
				}
			}
		}
	}
}

func TestNameOverride(t *testing.T) {
	t.Run("nameOverride renames the name label and the pods' selector", func(t *testing.T) {
		objs := render(t, map[string]any{"nameOverride": "sysctls"})
		var deployments int
		for _, o := range objs {
			if got := o.GetLabels()["app.kubernetes.io/name"]; got != "sysctls" {
				t.Errorf("%s: app.kubernetes.io/name = %q, want sysctls", key(o), got)
			}
			if o.GetKind() != "Deployment" {
				continue
			}
			deployments++
			sel, _, _ := unstructured.NestedString(o.Object, "spec", "selector", "matchLabels", "app.kubernetes.io/name")
			pod, _, _ := unstructured.NestedString(o.Object, "spec", "template", "metadata", "labels", "app.kubernetes.io/name")
			if sel != "sysctls" || pod != "sysctls" {
				t.Errorf("the Deployment selects name=%q and labels its pods name=%q, want sysctls for both", sel, pod)
			}
			if o.GetName() != "sysctl-placement" {
				t.Errorf("the Deployment is named %q: fullnameOverride, set, must keep naming objects", o.GetName())
			}
		}
		if deployments != 1 {
			t.Fatalf("%d Deployments rendered, want 1", deployments)
		}
	})
	t.Run("a nameOverride that is no DNS label is refused", func(t *testing.T) {
		refused(t, map[string]any{"nameOverride": "Sysctl_Placement"}, "nameOverride")
	})
}

// refused fails unless helm template refuses values with an error naming each of names.
func refused(t *testing.T, values map[string]any, names ...string) {
	t.Helper()
	_, err := Render(DefaultRelease, values)
	if err == nil {
		t.Fatalf("helm template accepted %v", values)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("the error does not name %q:\n%v", n, err)
		}
	}
}
