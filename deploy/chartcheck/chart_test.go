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

func install(t *testing.T, values map[string]any) *release.Release {
	t.Helper()
	rel, err := Install(DefaultRelease, values)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return rel
}

func decode(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := Decode([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// renderLessPreInstallHooks is render without the objects that are pre-install hooks
// (nor the pre- and post-delete hooks nor the test hook, below).
// kubectl apply -k creates everything at once and waits for nothing: the webhook's
// pods wait in ContainerCreating until the certs Job has made the TLS Secret, and the
// Job retries until the webhook configurations exist. Helm (with --wait), Argo CD and
// Flux wait for the Deployment before post-install hooks, so the chart makes the
// Secrets in a pre-install hook first, with a ServiceAccount and RBAC of its own that
// are deleted once it has succeeded: Helm's ordering, not part of what is installed,
// and so nothing the overlay has. The same holds for the pre-delete hook that deletes
// the webhook configurations before an uninstall: it exists only while Helm
// uninstalls, and kubectl has no uninstall to run it before; and for the post-delete
// hook that deletes the Secrets and Leases after it. The test hook (helm test) runs
// only when asked; with kustomize, `sysctl-placement doctor` is run by hand. The hook
// that deletes stale admission policies with the webhook backend runs after each
// install, upgrade and rollback (it is the only one that runs at post-rollback): a
// kustomize install switches backends by removing a component and deleting the
// policies by hand (docs/operations.md).
func renderLessPreInstallHooks(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	rel := install(t, values)
	objs := decode(t, rel.Manifest)
	for _, h := range rel.Hooks {
		if !slices.ContainsFunc(h.Events, func(e release.HookEvent) bool {
			return e == release.HookPreInstall || e == release.HookPreDelete || e == release.HookPostDelete || e == release.HookTest || e == release.HookPostRollback
		}) {
			objs = append(objs, decode(t, h.Manifest)...)
		}
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
		sameObjects(t, renderLessPreInstallHooks(t, nil), without(kustomize(t, "overlays/self-signed"), "Namespace"))
	})
	t.Run("namespace.create adds the overlay's Namespace with its Pod Security labels", func(t *testing.T) {
		sameObjects(t, renderLessPreInstallHooks(t, map[string]any{"namespace": map[string]any{"create": true}}), kustomize(t, "overlays/self-signed"))
	})
	t.Run("certificates.mode cert-manager renders the cert-manager overlay", func(t *testing.T) {
		values := map[string]any{"namespace": map[string]any{"create": true}, "certificates": map[string]any{"mode": "cert-manager"}}
		sameObjects(t, renderLessPreInstallHooks(t, values), kustomize(t, "overlays/cert-manager"))
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
		sameObjects(t, renderLessPreInstallHooks(t, values), kustomize(t, "overlays/self-signed", "monitoring", "network-policy", "metrics-secure"))
	})
	t.Run("admission.backend policy renders the overlay with the policy-backend component", func(t *testing.T) {
		values := map[string]any{"namespace": map[string]any{"create": true}, "admission": map[string]any{"backend": "policy"}}
		sameObjects(t, renderLessPreInstallHooks(t, values), kustomize(t, "overlays/self-signed", "policy-backend"))
	})
	t.Run("admission.backend policy with metrics.secure keeps both flags, in the components' order", func(t *testing.T) {
		values := map[string]any{"namespace": map[string]any{"create": true}, "metrics": map[string]any{"secure": true}, "admission": map[string]any{"backend": "policy"}}
		sameObjects(t, renderLessPreInstallHooks(t, values), kustomize(t, "overlays/self-signed", "metrics-secure", "policy-backend"))
	})
	for _, overlay := range []string{"self-signed", "cert-manager"} {
		t.Run("admission.webhookConfigurations false renders the no-webhook-configurations component, "+overlay, func(t *testing.T) {
			values := map[string]any{
				"namespace":    map[string]any{"create": true},
				"certificates": map[string]any{"mode": overlay},
				"admission":    map[string]any{"backend": "policy", "webhookConfigurations": false},
			}
			sameObjects(t, renderLessPreInstallHooks(t, values), kustomize(t, "overlays/"+overlay, "policy-backend", "no-webhook-configurations"))
		})
	}
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
		"cert-manager":   {"certificates": map[string]any{"mode": "cert-manager"}},
		"policy backend": {"admission": map[string]any{"backend": "policy"}},
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
		{"an admission backend that does not exist is refused", map[string]any{"admission": map[string]any{"backend": "cel"}}, []string{"admission", "backend", "webhook", "policy"}},
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
	cs, _, _ := unstructured.NestedSlice(podSpec(o), "containers")
	for _, c := range cs {
		img, _, _ := unstructured.NestedString(c.(map[string]any), "image")
		out = append(out, img)
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
		if n != 8 {
			t.Errorf("found %d containers, want 8 (webhook, the two certs Jobs, certs CronJob, the pre- and post-delete Jobs, the stale-policies Job, the helm test Pod)", n)
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

// certsFlag is the value of --name in a certs container's args ("--name", "value").
func certsFlag(args []string, name string) (string, bool) {
	i := slices.Index(args, name)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

func containerArgs(o *unstructured.Unstructured) []string {
	containers, _, _ := unstructured.NestedSlice(podSpec(o), "containers")
	if len(containers) == 0 {
		return nil
	}
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	return args
}

// hooked is a rendered hook: Helm's reading of its annotations and the object.
type hooked struct {
	*release.Hook
	obj *unstructured.Unstructured
}

// runsAt tells whether h runs at both events.
func (h hooked) runsAt(events ...release.HookEvent) bool {
	for _, e := range events {
		if !slices.Contains(h.Events, e) {
			return false
		}
	}
	return true
}

// In self-signed mode the Deployment mounts the Secret <fullname>-tls, which only
// `certs` makes. helm install --wait/--atomic, Argo CD (hooks become PostSync) and
// Flux wait for the Deployment before post-install hooks run, so a post-install Job
// that makes the Secret never runs: the install hangs. The Secret's maker must be a
// pre-install (and pre-upgrade) hook, after its own ServiceAccount and RBAC, which
// must be hooks too since the release's resources do not exist yet; only the caBundle
// patch, which needs the webhook configurations, runs post-install.
func TestSelfSignedSecretIsMadeBeforeTheDeployment(t *testing.T) {
	rel := install(t, nil)
	resources := byKey(decode(t, rel.Manifest))
	hooks := map[string]hooked{}
	for _, h := range rel.Hooks {
		for _, o := range decode(t, h.Manifest) {
			hooks[o.GetKind()+"/"+o.GetName()] = hooked{h, o}
		}
	}
	resource := func(kind, name string) *unstructured.Unstructured {
		return resources[fmt.Sprintf("%s %s/%s", kind, DefaultRelease.Namespace, name)]
	}
	// certsJob is the hook Job whose certs run makes the Secret secret, or patches the
	// webhook configurations named, running at events.
	certsJob := func(secret string, events ...release.HookEvent) (hooked, bool) {
		for _, h := range hooks {
			if h.Kind == "Job" && h.runsAt(events...) {
				if s, _ := certsFlag(containerArgs(h.obj), "--secret"); s == secret {
					return h, true
				}
			}
		}
		return hooked{}, false
	}
	deployment := resource("Deployment", "sysctl-placement")
	if deployment == nil {
		t.Fatal("no Deployment rendered")
	}
	volumes, _, _ := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "volumes")
	var secrets []string
	for _, v := range volumes {
		if name, ok, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); ok && resource("Secret", name) == nil {
			secrets = append(secrets, name)
		}
	}
	if !slices.Contains(secrets, "sysctl-placement-tls") {
		t.Fatalf("the Deployment mounts the Secrets %v, want sysctl-placement-tls among them", secrets)
	}

	for _, secret := range secrets {
		maker, ok := certsJob(secret, release.HookPreInstall, release.HookPreUpgrade)
		if !ok {
			t.Errorf("no pre-install,pre-upgrade hook Job makes the Secret %s the Deployment mounts", secret)
			continue
		}
		// The configurations do not exist before install, and the maker's
		// ServiceAccount may not read them: both names empty makes certs skip them.
		for _, flag := range []string{"--mutating-webhook", "--validating-webhook"} {
			if v, ok := certsFlag(containerArgs(maker.obj), flag); !ok || v != "" {
				t.Errorf("the pre-install Job %s passes %s %q, want it empty: it runs before the webhook configurations exist", maker.Name, flag, v)
			}
		}
		sa, _, _ := unstructured.NestedString(maker.obj.Object, "spec", "template", "spec", "serviceAccountName")
		before := func(what string, h hooked, ok bool) {
			t.Helper()
			switch {
			case !ok:
				t.Errorf("%s is no hook: it does not exist when the pre-install Job %s runs", what, maker.Name)
			case !h.runsAt(release.HookPreInstall, release.HookPreUpgrade):
				t.Errorf("%s is a hook at %v, want pre-install and pre-upgrade like the Job %s", what, h.Events, maker.Name)
			case h.Weight >= maker.Weight:
				t.Errorf("%s has hook weight %d, want it lower than the Job %s's %d so it is made first", what, h.Weight, maker.Name, maker.Weight)
			case !slices.Contains(h.DeletePolicies, release.HookBeforeHookCreation):
				t.Errorf("%s has delete policies %v, want before-hook-creation so the next upgrade can create it again", what, h.DeletePolicies)
			}
		}
		h, ok := hooks["ServiceAccount/"+sa]
		before("the ServiceAccount "+sa, h, ok)
		var bound bool
		for _, b := range hooks {
			if b.Kind != "RoleBinding" {
				continue
			}
			subjects, _, _ := unstructured.NestedSlice(b.obj.Object, "subjects")
			if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != sa {
				continue
			}
			bound = true
			before("the RoleBinding "+b.Name, b, true)
			roleName, _, _ := unstructured.NestedString(b.obj.Object, "roleRef", "name")
			role, ok := hooks["Role/"+roleName]
			before("the Role "+roleName, role, ok)
			if !ok {
				continue
			}
			// The same Secret rules as the certs Role the CronJob renews with.
			regular := resource("Role", "sysctl-placement-certs")
			if regular == nil {
				t.Fatal("no Role sysctl-placement-certs rendered")
			}
			if d := cmp.Diff(regular.Object["rules"], role.obj.Object["rules"]); d != "" {
				t.Errorf("the Role %s grants other rules than the certs Role (-) (+):\n%s", roleName, d)
			}
		}
		if !bound {
			t.Errorf("no hook RoleBinding binds the ServiceAccount %s of the pre-install Job %s", sa, maker.Name)
		}
	}

	patcher, ok := certsJob("sysctl-placement-tls", release.HookPostInstall, release.HookPostUpgrade)
	if !ok {
		t.Fatal("no post-install,post-upgrade hook Job runs certs to patch caBundle")
	}
	for flag, kind := range map[string]string{"--mutating-webhook": "MutatingWebhookConfiguration", "--validating-webhook": "ValidatingWebhookConfiguration"} {
		name, _ := certsFlag(containerArgs(patcher.obj), flag)
		if resources[fmt.Sprintf("%s /%s", kind, name)] == nil {
			t.Errorf("the post-install Job %s passes %s %q, want the rendered %s's name", patcher.Name, flag, name, kind)
		}
	}
	// Post-install, the release's resources exist: the patcher runs as the regular
	// certs ServiceAccount, bound to the ClusterRole that may patch the configurations.
	sa, _, _ := unstructured.NestedString(patcher.obj.Object, "spec", "template", "spec", "serviceAccountName")
	if resource("ServiceAccount", sa) == nil {
		t.Errorf("the post-install Job %s runs as %s, which is no release resource", patcher.Name, sa)
	}
	var mayPatch bool
	for _, b := range resources {
		if b.GetKind() != "ClusterRoleBinding" {
			continue
		}
		subjects, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		roleName, _, _ := unstructured.NestedString(b.Object, "roleRef", "name")
		role := resources["ClusterRole /"+roleName]
		if len(subjects) != 1 || subjects[0].(map[string]any)["name"] != sa || role == nil {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
		for _, r := range rules {
			verbs, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "verbs")
			resourceNames, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resourceNames")
			mayPatch = mayPatch || (slices.Contains(verbs, "patch") && slices.Contains(resourceNames, "sysctl-placement"))
		}
	}
	if !mayPatch {
		t.Errorf("no ClusterRoleBinding among the release's resources lets %s patch the webhook configurations", sa)
	}
}
