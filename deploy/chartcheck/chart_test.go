package chartcheck

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// key names an object the way kubectl does.
func key(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

// comparable strips what legitimately differs between the tools and returns the rest:
// the managed-by label (Helm or kustomize), Helm's hook annotations, and the config
// file's formatting (its comments; the YAML is compared as data).
func comparable(t *testing.T, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	c := o.DeepCopy()
	labels := c.GetLabels()
	delete(labels, "app.kubernetes.io/managed-by")
	c.SetLabels(labels)
	annotations := c.GetAnnotations()
	maps.DeleteFunc(annotations, func(k, _ string) bool { return strings.HasPrefix(k, "helm.sh/") })
	if len(annotations) == 0 {
		annotations = nil
	}
	c.SetAnnotations(annotations)
	if c.GetKind() == "ConfigMap" {
		data, _, _ := unstructured.NestedStringMap(c.Object, "data")
		for k, v := range data {
			if strings.HasSuffix(k, ".yaml") {
				var parsed any
				if err := yaml.Unmarshal([]byte(v), &parsed); err != nil {
					t.Fatalf("%s: %s is not YAML: %v", key(o), k, err)
				}
				if err := unstructured.SetNestedField(c.Object, fmt.Sprint(parsed), "data", k); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return c.Object
}

func byKey(objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	m := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		m[key(o)] = o
	}
	return m
}

// sameObjects fails unless chart and kustomize render the same objects with the same
// content; the chart may add labels (part-of and the like), never drop or change one.
func sameObjects(t *testing.T, chart, kustomize []*unstructured.Unstructured) {
	t.Helper()
	c, k := byKey(chart), byKey(kustomize)
	if ck, kk := slices.Sorted(maps.Keys(c)), slices.Sorted(maps.Keys(k)); !slices.Equal(ck, kk) {
		t.Fatalf("the chart and kustomize render different objects:\n%s", cmp.Diff(kk, ck))
	}
	for name, ko := range k {
		co := c[name]
		// Labels first: kustomize's must all be on the chart's object.
		for l, v := range ko.GetLabels() {
			if l == "app.kubernetes.io/managed-by" {
				continue
			}
			if got, ok := co.GetLabels()[l]; !ok || got != v {
				t.Errorf("%s: label %s=%q in kustomize, %q in the chart", name, l, v, got)
			}
		}
		want, got := comparable(t, ko), comparable(t, co)
		unstructured.RemoveNestedField(want, "metadata", "labels")
		unstructured.RemoveNestedField(got, "metadata", "labels")
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s differs between kustomize (-) and the chart (+):\n%s", name, d)
		}
	}
}

func render(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Render(DefaultRelease, values)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return objs
}

func kustomize(t *testing.T, overlay string, components ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Kustomize(overlay, components...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func without(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	return slices.DeleteFunc(slices.Clone(objs), func(o *unstructured.Unstructured) bool { return o.GetKind() == kind })
}

// The chart and the kustomizations are two ways to install one thing: same objects,
// same security settings.
func TestChartMatchesKustomize(t *testing.T) {
	t.Run("default values render the self-signed overlay, less the Namespace Helm needs first", func(t *testing.T) {
		sameObjects(t, render(t, nil), without(kustomize(t, "overlays/self-signed"), "Namespace"))
	})
	t.Run("namespace.create adds the overlay's Namespace with its Pod Security labels", func(t *testing.T) {
		sameObjects(t, render(t, map[string]any{"namespace": map[string]any{"create": true}}), kustomize(t, "overlays/self-signed"))
	})
	t.Run("certificates.mode cert-manager renders the cert-manager overlay", func(t *testing.T) {
		values := map[string]any{"namespace": map[string]any{"create": true}, "certificates": map[string]any{"mode": "cert-manager"}}
		sameObjects(t, render(t, values), kustomize(t, "overlays/cert-manager"))
	})
	t.Run("monitoring, networkPolicy and metrics.secure render the overlay with the three components", func(t *testing.T) {
		values := map[string]any{
			"namespace":     map[string]any{"create": true},
			"metrics":       map[string]any{"secure": true},
			"networkPolicy": map[string]any{"enabled": true},
			"monitoring": map[string]any{
				"serviceMonitor": map[string]any{"enabled": true},
				"prometheusRule": map[string]any{"enabled": true},
				"dashboard":      map[string]any{"enabled": true},
			},
		}
		sameObjects(t, render(t, values), kustomize(t, "overlays/self-signed", "monitoring", "network-policy", "metrics-secure"))
	})
}

// helm lint --strict passes with the default values and every optional part enabled.
func TestHelmLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"default values": nil,
		"everything enabled": {
			"metrics":       map[string]any{"secure": true},
			"networkPolicy": map[string]any{"enabled": true},
			"monitoring": map[string]any{
				"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
				"prometheusRule": map[string]any{"enabled": true},
				"dashboard":      map[string]any{"enabled": true},
			},
		},
		"cert-manager": {"certificates": map[string]any{"mode": "cert-manager"}},
	} {
		t.Run(name, func(t *testing.T) {
			msgs, err := Lint(values)
			if err != nil {
				t.Errorf("helm lint --strict: %v\n%s", err, strings.Join(msgs, "\n"))
			}
		})
	}
}

// Bad values fail helm template with a message naming the value.
func TestValuesSchema(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"an unknown top-level value (a typo) is refused", map[string]any{"replica": 3}, []string{"replica"}},
		{"zero replicas are refused", map[string]any{"replicas": 0}, []string{"replicas", "minimum"}},
		{"a certificate mode that does not exist is refused", map[string]any{"certificates": map[string]any{"mode": "vault"}}, []string{"certificates", "mode", "self-signed", "cert-manager"}},
		{"a failurePolicy other than Fail or Ignore is refused", map[string]any{"webhook": map[string]any{"failurePolicy": map[string]any{"pods": "Retry", "templates": "Ignore"}}}, []string{"failurePolicy", "pods"}},
		{"a webhook port out of range is refused", map[string]any{"webhook": map[string]any{"port": 70000}}, []string{"webhook", "port"}},
		{"a policy mode that does not exist is refused", map[string]any{"config": map[string]any{"policy": map[string]any{"hostIPC": "remove"}}}, []string{"hostIPC", "strip"}},
		{"a pool without nodeSelector is refused", map[string]any{"config": map[string]any{"pools": []any{map[string]any{"name": "db"}}}}, []string{"pools", "nodeSelector"}},
		{"a digest that is not sha256 is refused", map[string]any{"image": map[string]any{"digest": "latest"}}, []string{"image", "digest"}},
		{"a string where a number belongs is refused", map[string]any{"replicas": "two"}, []string{"replicas", "integer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(DefaultRelease, tc.values)
			if err == nil {
				t.Fatalf("helm template accepted %v", tc.values)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestNetworkPolicyValues(t *testing.T) {
	t.Run("webhookFromCIDRs opens the webhook port to those CIDRs only", func(t *testing.T) {
		objs := render(t, map[string]any{"networkPolicy": map[string]any{"enabled": true, "webhookFromCIDRs": []any{"172.16.0.0/28"}}})
		for _, o := range objs {
			if o.GetKind() != "NetworkPolicy" {
				continue
			}
			ingress, _, _ := unstructured.NestedSlice(o.Object, "spec", "ingress")
			from, _, _ := unstructured.NestedSlice(ingress[0].(map[string]any), "from")
			cidr, _, _ := unstructured.NestedString(from[0].(map[string]any), "ipBlock", "cidr")
			if len(from) != 1 || cidr != "172.16.0.0/28" {
				t.Errorf("the webhook port's rule: from = %v, want the one ipBlock 172.16.0.0/28", from)
			}
			return
		}
		t.Fatal("networkPolicy.enabled renders no NetworkPolicy")
	})
	t.Run("a CIDR that is not one is refused", func(t *testing.T) {
		_, err := Render(DefaultRelease, map[string]any{"networkPolicy": map[string]any{"webhookFromCIDRs": []any{"control-plane"}}})
		if err == nil || !strings.Contains(err.Error(), "webhookFromCIDRs") {
			t.Errorf("helm template: %v, want an error naming webhookFromCIDRs", err)
		}
	})
}

func images(o *unstructured.Unstructured) []string {
	var out []string
	for _, path := range [][]string{{"spec", "template", "spec", "containers"}, {"spec", "jobTemplate", "spec", "template", "spec", "containers"}} {
		cs, _, _ := unstructured.NestedSlice(o.Object, path...)
		for _, c := range cs {
			img, _, _ := unstructured.NestedString(c.(map[string]any), "image")
			out = append(out, img)
		}
	}
	return out
}

func TestChartValues(t *testing.T) {
	t.Run("image.digest pins every container by digest", func(t *testing.T) {
		digest := "sha256:" + strings.Repeat("ab", 32)
		n := 0
		for _, o := range render(t, map[string]any{"image": map[string]any{"digest": digest}}) {
			for _, img := range images(o) {
				n++
				if img != "ghcr.io/sysctl-placement/sysctl-placement@"+digest {
					t.Errorf("%s runs %s, want the image by digest", key(o), img)
				}
			}
		}
		if n != 3 {
			t.Errorf("found %d containers, want 3 (webhook, certs Job, certs CronJob)", n)
		}
	})
	t.Run("replicas raise the critical-pods quota with them", func(t *testing.T) {
		for _, o := range render(t, map[string]any{"replicas": 5}) {
			if o.GetKind() == "ResourceQuota" {
				if pods, _, _ := unstructured.NestedString(o.Object, "spec", "hard", "pods"); pods != "7" {
					t.Errorf("quota pods = %q with 5 replicas, want 7 (surge and a spare)", pods)
				}
				return
			}
		}
		t.Fatal("no ResourceQuota rendered")
	})
	t.Run("one replica renders no PodDisruptionBudget, which would block every drain", func(t *testing.T) {
		for _, replicas := range []int{1, 2, 3} {
			n := 0
			for _, o := range render(t, map[string]any{"replicas": replicas}) {
				if o.GetKind() == "PodDisruptionBudget" {
					n++
				}
			}
			if want := min(replicas-1, 1); n != want {
				t.Errorf("%d replicas render %d PodDisruptionBudgets, want %d", replicas, n, want)
			}
		}
	})
	t.Run("GOMEMLIMIT is derived from whatever resources.limits.memory is", func(t *testing.T) {
		values := map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": "1Gi"}}}
		for _, o := range render(t, values) {
			if o.GetKind() != "Deployment" {
				continue
			}
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			c := containers[0].(map[string]any)
			limit, _, _ := unstructured.NestedString(c, "resources", "limits", "memory")
			env := map[string]any{}
			list, _, _ := unstructured.NestedSlice(c, "env")
			for _, e := range list {
				env[e.(map[string]any)["name"].(string)] = e
			}
			field, _, _ := unstructured.NestedMap(env, "MEMORY_LIMIT_MIB", "valueFrom", "resourceFieldRef")
			gomemlimit, _, _ := unstructured.NestedString(env, "GOMEMLIMIT", "value")
			if limit != "1Gi" || field["resource"] != "limits.memory" || field["divisor"] != "1Mi" || gomemlimit != "$(MEMORY_LIMIT_MIB)000000" {
				t.Errorf("limit %q, MEMORY_LIMIT_MIB from %v, GOMEMLIMIT %q; want GOMEMLIMIT as 10^6 × the limit in MiB", limit, field, gomemlimit)
			}
			return
		}
		t.Fatal("no Deployment rendered")
	})
	t.Run("webhook.port moves the container port and --listen while the Service keeps 443", func(t *testing.T) {
		objs := render(t, map[string]any{"webhook": map[string]any{"port": 10250}})
		for _, o := range objs {
			switch o.GetKind() {
			case "Deployment":
				args := fmt.Sprint(unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers"))
				if !strings.Contains(args, "--listen :10250") || !strings.Contains(args, "containerPort:10250") {
					t.Errorf("the Deployment does not listen on 10250: %s", args)
				}
			case "Service":
				ports := fmt.Sprint(unstructured.NestedSlice(o.Object, "spec", "ports"))
				if !strings.Contains(ports, "port:443") || !strings.Contains(ports, "targetPort:https") {
					t.Errorf("the Service must keep 443 → https: %s", ports)
				}
			}
		}
	})
	t.Run("failurePolicy.pods applies to the pods entries only", func(t *testing.T) {
		objs := render(t, map[string]any{"webhook": map[string]any{"failurePolicy": map[string]any{"pods": "Ignore", "templates": "Fail"}}})
		for _, o := range objs {
			if !strings.HasSuffix(o.GetKind(), "WebhookConfiguration") {
				continue
			}
			hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
			for _, h := range hooks {
				name, _, _ := unstructured.NestedString(h.(map[string]any), "name")
				fp, _, _ := unstructured.NestedString(h.(map[string]any), "failurePolicy")
				want := "Fail"
				if name == "pods.sysctl-placement.io" {
					want = "Ignore"
				}
				if fp != want {
					t.Errorf("%s %s: failurePolicy %s, want %s", o.GetKind(), name, fp, want)
				}
			}
		}
	})
}
