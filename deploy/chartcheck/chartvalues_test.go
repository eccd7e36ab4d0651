package chartcheck

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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

// podSpec is the pod spec of a Pod (the helm test hook), Deployment, Job or CronJob,
// nil for other kinds.
func podSpec(o *unstructured.Unstructured) map[string]any {
	var path []string
	switch o.GetKind() {
	case "Pod":
		path = []string{"spec"}
	case "Deployment", "Job":
		path = []string{"spec", "template", "spec"}
	case "CronJob":
		path = []string{"spec", "jobTemplate", "spec", "template", "spec"}
	default:
		return nil
	}
	spec, _, _ := unstructured.NestedMap(o.Object, path...)
	return spec
}

// workloads are the objects that run pods, by kubectl key, with their pod specs;
// hooks of every event included.
func workloads(t *testing.T, values map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, o := range renderAll(t, values) {
		if spec := podSpec(o); spec != nil {
			out[key(o)] = spec
		}
	}
	if len(out) == 0 {
		t.Fatal("no Pod, Deployment, Job or CronJob rendered")
	}
	return out
}

// webhookPodSpec is the Deployment's pod spec.
func webhookPodSpec(t *testing.T, values map[string]any) map[string]any {
	t.Helper()
	spec, ok := workloads(t, values)["Deployment "+DefaultRelease.Namespace+"/sysctl-placement"]
	if !ok {
		t.Fatal("no Deployment sysctl-placement rendered")
	}
	return spec
}

func TestPodPlacementValues(t *testing.T) {
	values := map[string]any{
		"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
		"nodeSelector":     map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":      []any{map[string]any{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}},
	}
	for field, want := range values {
		t.Run(field+" reaches every pod the chart runs, webhook and Jobs", func(t *testing.T) {
			specs := workloads(t, values)
			if len(specs) < 4 {
				t.Errorf("%d workloads rendered, want the Deployment, both certs Jobs and the CronJob at least", len(specs))
			}
			for name, spec := range specs {
				if d := cmp.Diff(want, spec[field]); d != "" {
					t.Errorf("%s: %s differs from the value (-) (+):\n%s", name, field, d)
				}
			}
		})
	}
	for field, value := range map[string]any{
		"affinity": map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
			"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "infra", "operator": "Exists"}}}}}}},
		"topologySpreadConstraints": []any{map[string]any{"maxSkew": float64(2), "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}},
	} {
		t.Run(field+" set replaces the webhook pods' default", func(t *testing.T) {
			defaults := webhookPodSpec(t, nil)[field]
			if defaults == nil {
				t.Fatalf("the default webhook pod spec has no %s", field)
			}
			got := webhookPodSpec(t, map[string]any{field: value})[field]
			if d := cmp.Diff(value, got); d != "" {
				t.Errorf("%s differs from the value (-) (+):\n%s", field, d)
			}
		})
		t.Run(field+" empty keeps the webhook pods' default", func(t *testing.T) {
			empty := any(map[string]any{})
			if field == "topologySpreadConstraints" {
				empty = []any{}
			}
			if d := cmp.Diff(webhookPodSpec(t, nil)[field], webhookPodSpec(t, map[string]any{field: empty})[field]); d != "" {
				t.Errorf("%s: {} changes the default (-) (+):\n%s", field, d)
			}
		})
	}
	t.Run("tolerations that are not a list are refused, naming tolerations", func(t *testing.T) {
		refused(t, map[string]any{"tolerations": "x"}, "tolerations")
	})
	t.Run("a toleration with an unknown field is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"tolerations": []any{map[string]any{"key": "a", "effects": "NoSchedule"}}}, "tolerations", "effects")
	})
	t.Run("imagePullSecrets as bare names are refused, naming imagePullSecrets", func(t *testing.T) {
		refused(t, map[string]any{"imagePullSecrets": []any{"regcred"}}, "imagePullSecrets")
	})
	t.Run("a nodeSelector value that is not a string is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"nodeSelector": map[string]any{"infra": true}}, "nodeSelector", "infra")
	})
	t.Run("an affinity kind that does not exist is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"affinity": map[string]any{"antiAffinity": map[string]any{}}}, "affinity", "antiAffinity")
	})
	t.Run("a spread constraint without topologyKey is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}}}, "topologySpreadConstraints", "topologyKey")
	})
}

// podMetadata is the pod's metadata of a Pod, or the pod template's of a Deployment,
// Job or CronJob.
func podMetadata(o *unstructured.Unstructured) map[string]any {
	path := []string{"spec", "template", "metadata"}
	switch o.GetKind() {
	case "Pod":
		path = []string{"metadata"}
	case "CronJob":
		path = []string{"spec", "jobTemplate", "spec", "template", "metadata"}
	}
	m, _, _ := unstructured.NestedMap(o.Object, path...)
	return m
}

func TestPodMetadataValues(t *testing.T) {
	values := map[string]any{
		"podLabels":          map[string]any{"team": "platform", "app.kubernetes.io/name": "other"},
		"podAnnotations":     map[string]any{"prometheus.io/scrape": "false"},
		"hookPodLabels":      map[string]any{"team": "platform-jobs"},
		"hookPodAnnotations": map[string]any{"sidecar.istio.io/inject": "false"},
	}
	var webhook, jobs int
	for _, o := range renderAll(t, values) {
		if podSpec(o) == nil {
			continue
		}
		meta := podMetadata(o)
		labels, _, _ := unstructured.NestedStringMap(meta, "labels")
		annotations, _, _ := unstructured.NestedStringMap(meta, "annotations")
		if o.GetKind() == "Deployment" {
			webhook++
			t.Run("podLabels and podAnnotations reach the webhook's pods, not the selector", func(t *testing.T) {
				if labels["team"] != "platform" || annotations["prometheus.io/scrape"] != "false" {
					t.Errorf("pod labels %v, annotations %v: want team=platform and prometheus.io/scrape=false", labels, annotations)
				}
				if labels["app.kubernetes.io/name"] != "sysctl-placement" {
					t.Errorf("podLabels replaced the selector's name label: %v", labels)
				}
				if sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels"); sel["team"] != "" {
					t.Errorf("podLabels reached the immutable selector: %v", sel)
				}
				if _, ok := annotations["sidecar.istio.io/inject"]; ok {
					t.Error("hookPodAnnotations reached the webhook's pods")
				}
			})
			continue
		}
		jobs++
		t.Run("hookPodLabels and hookPodAnnotations reach every Job's pods, not the webhook's values", func(t *testing.T) {
			if labels["team"] != "platform-jobs" || annotations["sidecar.istio.io/inject"] != "false" {
				t.Errorf("%s: pod labels %v, annotations %v; want team=platform-jobs and sidecar.istio.io/inject=false", key(o), labels, annotations)
			}
			if _, ok := annotations["prometheus.io/scrape"]; ok {
				t.Errorf("%s: podAnnotations reached a Job's pods", key(o))
			}
		})
	}
	if webhook != 1 || jobs < 3 {
		t.Errorf("found %d Deployments and %d Jobs and CronJobs, want 1 and at least 3", webhook, jobs)
	}
	t.Run("a pod annotation that is not a string is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"hookPodAnnotations": map[string]any{"sidecar.istio.io/inject": false}}, "hookPodAnnotations", "sidecar.istio.io~1inject") // a JSON pointer: / is ~1
	})
	t.Run("podLabels that are not a map are refused, naming podLabels", func(t *testing.T) {
		refused(t, map[string]any{"podLabels": []any{"team=a"}}, "podLabels")
	})
}

// webhookContainer is the Deployment's webhook container.
func webhookContainer(t *testing.T, values map[string]any) map[string]any {
	t.Helper()
	containers, _ := webhookPodSpec(t, values)["containers"].([]any)
	if len(containers) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(containers))
	}
	return containers[0].(map[string]any)
}

func TestExtraEnvAndVolumesValues(t *testing.T) {
	volume := map[string]any{"name": "kubelet-ca", "configMap": map[string]any{"name": "kubelet-ca"}}
	mount := map[string]any{"name": "kubelet-ca", "mountPath": "/etc/kubelet-ca", "readOnly": true}
	env := map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}
	values := map[string]any{
		"extraEnv":          []any{env},
		"extraVolumes":      []any{volume},
		"extraVolumeMounts": []any{mount},
		"extraArgs":         []any{"--kubelet-ca-file", "/etc/kubelet-ca/ca.crt"},
	}
	last := func(list any) any {
		l, _ := list.([]any)
		if len(l) == 0 {
			return nil
		}
		return l[len(l)-1]
	}
	defaults := webhookContainer(t, nil)
	c := webhookContainer(t, values)
	t.Run("extraEnv is added after the chart's own variables", func(t *testing.T) {
		if d := cmp.Diff(append(slices.Clone(defaults["env"].([]any)), env), c["env"]); d != "" {
			t.Errorf("env differs from the default's plus extraEnv (-) (+):\n%s", d)
		}
	})
	t.Run("extraVolumes and extraVolumeMounts mount a CA file for --kubelet-ca-file", func(t *testing.T) {
		if d := cmp.Diff(mount, last(c["volumeMounts"])); d != "" {
			t.Errorf("the last volume mount differs from extraVolumeMounts (-) (+):\n%s", d)
		}
		if n, want := len(c["volumeMounts"].([]any)), len(defaults["volumeMounts"].([]any))+1; n != want {
			t.Errorf("%d volume mounts, want the chart's and the extra one: %d", n, want)
		}
		if d := cmp.Diff(volume, last(webhookPodSpec(t, values)["volumes"])); d != "" {
			t.Errorf("the last volume differs from extraVolumes (-) (+):\n%s", d)
		}
	})
	t.Run("an extraEnv entry without a name is refused, naming extraEnv", func(t *testing.T) {
		refused(t, map[string]any{"extraEnv": []any{map[string]any{"value": "x"}}}, "extraEnv", "name")
	})
	t.Run("a volume without a source is refused, naming extraVolumes", func(t *testing.T) {
		refused(t, map[string]any{"extraVolumes": []any{map[string]any{"name": "ca"}}}, "extraVolumes")
	})
	t.Run("a mount without mountPath is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"extraVolumeMounts": []any{map[string]any{"name": "ca", "path": "/ca"}}}, "extraVolumeMounts", "mountPath")
	})
}

func TestSecurityContextValues(t *testing.T) {
	// OpenShift's restricted SCC assigns a UID from the namespace's range and refuses
	// a pod that asks for another: users drop runAsUser and runAsGroup.
	values := map[string]any{
		"podSecurityContext":       map[string]any{"runAsUser": nil, "runAsGroup": nil},
		"containerSecurityContext": map[string]any{"readOnlyRootFilesystem": false},
	}
	specs := workloads(t, values)
	if len(specs) < 4 {
		t.Errorf("%d workloads rendered, want the Deployment, both certs Jobs and the CronJob at least", len(specs))
	}
	for name, spec := range specs {
		t.Run("podSecurityContext null drops runAsUser and runAsGroup from every pod, keeping the rest", func(t *testing.T) {
			want := map[string]any{"runAsNonRoot": true, "seccompProfile": map[string]any{"type": "RuntimeDefault"}}
			if d := cmp.Diff(want, spec["securityContext"]); d != "" {
				t.Errorf("%s: pod securityContext (-want +got):\n%s", name, d)
			}
		})
		t.Run("containerSecurityContext overrides a field of every container, keeping the rest", func(t *testing.T) {
			for _, c := range spec["containers"].([]any) {
				sc, _ := c.(map[string]any)["securityContext"].(map[string]any)
				if sc["readOnlyRootFilesystem"] != false || sc["allowPrivilegeEscalation"] != false || sc["runAsNonRoot"] != true {
					t.Errorf("%s: container securityContext %v, want readOnlyRootFilesystem false and the restricted rest kept", name, sc)
				}
			}
		})
	}
	t.Run("an unknown securityContext field is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"podSecurityContext": map[string]any{"runAsUid": 1000}}, "podSecurityContext", "runAsUid")
	})
	t.Run("a runAsUser that is no number is refused, naming it", func(t *testing.T) {
		refused(t, map[string]any{"containerSecurityContext": map[string]any{"runAsUser": "nobody"}}, "containerSecurityContext", "runAsUser")
	})
}

// helm lint --strict passes with every pod value of a real cluster set at once.
func TestHelmLintWithEveryPodValue(t *testing.T) {
	values := map[string]any{
		"nameOverride":              "sysctls",
		"imagePullSecrets":          []any{map[string]any{"name": "regcred"}},
		"nodeSelector":              map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":               []any{map[string]any{"key": "infra", "operator": "Exists"}},
		"affinity":                  map[string]any{"podAntiAffinity": map[string]any{}},
		"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}},
		"podLabels":                 map[string]any{"team": "platform"},
		"podAnnotations":            map[string]any{"a": "b"},
		"hookPodLabels":             map[string]any{"team": "platform"},
		"hookPodAnnotations":        map[string]any{"sidecar.istio.io/inject": "false"},
		"extraEnv":                  []any{map[string]any{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}},
		"extraVolumes":              []any{map[string]any{"name": "ca", "configMap": map[string]any{"name": "ca"}}},
		"extraVolumeMounts":         []any{map[string]any{"name": "ca", "mountPath": "/ca"}},
		"podSecurityContext":        map[string]any{"runAsUser": nil, "runAsGroup": nil},
		"containerSecurityContext":  map[string]any{"runAsUser": 1000},
	}
	if msgs, err := Lint(values); err != nil {
		t.Errorf("helm lint --strict: %v\n%s", err, strings.Join(msgs, "\n"))
	}
}
