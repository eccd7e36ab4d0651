package webhook

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/randfill"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// fullObject decodes raw into the complete k8s.io/api types, as review.DecodeObject did
// before it decoded only what placement reads: the reference for the narrow decode.
func fullObject(raw []byte, kind metav1.GroupVersionKind) (*corev1.Pod, bool, error) {
	var env struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta `json:"metadata"`
		Spec            struct {
			corev1.PodSpec `json:",inline"`
			Template       *corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	// Case-sensitive like review.DecodeObject and the API server.
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &env); err != nil {
		return nil, false, err
	}
	if env.Kind == "" {
		env.Kind = kind.Kind
	}
	switch env.Kind {
	case "Pod":
		return &corev1.Pod{ObjectMeta: env.Metadata, Spec: env.Spec.PodSpec}, false, nil
	case "Deployment":
		if env.Spec.Template == nil {
			env.Spec.Template = &corev1.PodTemplateSpec{}
		}
		return &corev1.Pod{ObjectMeta: env.Spec.Template.ObjectMeta, Spec: env.Spec.Template.Spec}, true, nil
	}
	return nil, false, fmt.Errorf("kind %q is not a Pod or a Deployment", env.Kind)
}

// checkNarrowDecidesAsFull plans object both ways and wants the same decision, the
// same JSON patch and the same controller (for Events).
func checkNarrowDecidesAsFull(t *testing.T, compiled *scheduling.Compiled, ns scheduling.Namespace, object string, kind metav1.GroupVersionKind) {
	t.Helper()
	full, template, fullErr := fullObject([]byte(object), kind)
	narrow, narrowErr := review.DecodeObject([]byte(object), kind)
	if fullErr != nil {
		// Nothing to compare: the full decode fails on a field the narrow one skips
		// (or both fail). The API server never sends such an object; it decoded it.
		return
	}
	if narrowErr != nil {
		t.Fatalf("the narrow decode fails where the full decode does not: %v", narrowErr)
	}
	if narrow.Template != template {
		t.Fatalf("template %v, want %v", narrow.Template, template)
	}
	want := scheduling.Plan(scheduling.Input{Pod: full, Namespace: ns, Config: compiled, Template: template})
	got := scheduling.Plan(scheduling.Input{Pod: narrow.Pod, Namespace: ns, Config: compiled, Template: template})
	if !reflect.DeepEqual(got, want) {
		gotJSON, _ := json.Marshal(got)
		wantJSON, _ := json.Marshal(want)
		t.Fatalf("the narrow decode decides otherwise: a field Plan reads is missing from podfields.go\ngot  %s\nwant %s", gotJSON, wantJSON)
	}
	fullObj := narrow
	fullObj.Pod = full
	wantPatch, wantErr := mutationPatch(&fullObj, &want)
	gotPatch, gotErr := mutationPatch(&narrow, &got)
	if string(gotPatch) != string(wantPatch) || (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("the narrow decode patches otherwise: a field the patch reads is missing from podfields.go\ngot  %s (%v)\nwant %s (%v)", gotPatch, gotErr, wantPatch, wantErr)
	}
	if !reflect.DeepEqual(metav1.GetControllerOfNoCopy(narrow.Pod), metav1.GetControllerOfNoCopy(full)) {
		t.Fatalf("the controller differs: %v, want %v", metav1.GetControllerOfNoCopy(narrow.Pod), metav1.GetControllerOfNoCopy(full))
	}
}

func TestNarrowDecodeDecidesAsFull(t *testing.T) {
	t.Run("planning the narrow decode gives the same decision as the full decode for every golden pod", func(t *testing.T) {
		forEveryGoldenPod(t, checkNarrowDecidesAsFull)
	})

	// Fields the golden pods do not use: a controller, hostPID, pod anti-affinity next to
	// node affinity, a full security context.
	t.Run("the narrow decode keeps what the golden pods do not show", func(t *testing.T) {
		compiled := goldenConfig(t)
		const sysctl = `"securityContext": {"sysctls": [{"name": "kernel.shmmax", "value": "1"}]}, "containers": [{"name": "c", "image": "i"}]`
		for name, tc := range map[string]struct {
			object      string
			annotations map[string]string
		}{
			"a Deployment's pod": {object: deploymentPod},
			"hostPID keeps a user-namespaced sysctl from stripping hostUsers": {
				object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
			  "spec": {"hostPID": true, "securityContext": {"sysctls": [{"name": "user.max_user_namespaces", "value": "1"}]}, "containers": [{"name": "c", "image": "i"}]}}`,
				annotations: map[string]string{scheduling.AnnotationHostUsers: "strip"},
			},
			"pod anti-affinity and node affinity": {object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
		  "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "a"}}}]},
		    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}]}}},
		    "securityContext": {"runAsNonRoot": true, "fsGroup": 999, "sysctls": [{"name": "net.core.somaxconn", "value": "4096"}]}, "containers": [{"name": "c", "image": "i"}]}}`},
			"only pod affinity": {object: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"affinity": {"podAffinity": {}}, ` + sysctl + `}}`},
		} {
			t.Run(name, func(t *testing.T) {
				ns := scheduling.Namespace{Name: "team", Annotations: map[string]string{scheduling.AnnotationEnabled: "true"}}
				for k, v := range tc.annotations {
					ns.Annotations[k] = v
				}
				checkNarrowDecidesAsFull(t, compiled, ns, tc.object, podKind())
			})
		}
	})
}

// FuzzNarrowDecodeDecidesAsFullDecode: for any pod JSON both decodes decide alike.
func FuzzNarrowDecodeDecidesAsFullDecode(f *testing.F) {
	for _, in := range readGoldenInputs(f) {
		if !in.Template {
			f.Add([]byte(in.Pod), in.Namespace.Annotations[scheduling.AnnotationHostIPC])
		}
	}
	f.Add([]byte(deploymentPod), "")
	fuzzPods(f, checkNarrowDecidesAsFull)
}

// keepGoldenFields copies onto pod every field the narrow decode keeps
// (review/podfields.go) from golden, so that pod is planned as the golden pod is
// while every other field holds what the filler put there.
func keepGoldenFields(pod, golden *corev1.Pod) {
	pod.Name, pod.GenerateName = golden.Name, golden.GenerateName
	pod.Labels, pod.Annotations, pod.OwnerReferences = golden.Labels, golden.Annotations, golden.OwnerReferences
	s, g := &pod.Spec, &golden.Spec
	s.NodeName, s.NodeSelector, s.Tolerations = g.NodeName, g.NodeSelector, g.Tolerations
	s.HostNetwork, s.HostPID, s.HostIPC, s.HostUsers = g.HostNetwork, g.HostPID, g.HostIPC, g.HostUsers
	switch {
	case g.Affinity == nil && s.Affinity != nil:
		s.Affinity.NodeAffinity = nil
	case g.Affinity != nil:
		if s.Affinity == nil {
			s.Affinity = &corev1.Affinity{}
		}
		s.Affinity.NodeAffinity = g.Affinity.NodeAffinity
	}
	switch {
	case g.SecurityContext == nil && s.SecurityContext != nil:
		s.SecurityContext.Sysctls = nil
	case g.SecurityContext != nil:
		if s.SecurityContext == nil {
			s.SecurityContext = &corev1.PodSecurityContext{}
		}
		s.SecurityContext.Sysctls = g.SecurityContext.Sysctls
	}
}

// The pod-field trap: the webhook decodes only the fields of podfields.go, so a field
// scheduling.Plan (or the patch) starts reading but the narrow decode drops would be
// silently zero in production. The golden-pod tests above catch it only when a golden
// pod sets that field. Here every golden pod is planned again with every other field
// of corev1.Pod filled at random (sigs.k8s.io/randfill, as apimachinery's round-trip
// tests fill objects): a field Plan reads that the decode drops gives the full and the
// narrow decode different decisions for some seed.
func TestNarrowDecode(t *testing.T) {
	compiled := goldenConfig(t)
	const seeds = 5 // 180 random pods; 20 cost 45 s under -race on 2 cores
	for name, in := range readGoldenInputs(t) {
		object, kind := asPodObject(in)
		golden, template, err := fullObject([]byte(object), kind)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ns := scheduling.Namespace{Name: in.Namespace.Name, Labels: in.Namespace.Labels, Annotations: in.Namespace.Annotations}
		t.Run("golden pod "+name+" with every field Plan must not read filled at random decides as the narrow decode", func(t *testing.T) {
			for seed := range int64(seeds) {
				var pod corev1.Pod
				randomFiller(seed).Fill(&pod)
				keepGoldenFields(&pod, golden)
				pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
				var doc any = &pod
				if template {
					doc = map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "d"},
						"spec": map[string]any{"template": corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}}}
				}
				raw, err := json.Marshal(doc)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				checkNarrowDecidesAsFull(t, compiled, ns, string(raw), kind)
			}
		})
	}
}

// randomFiller fills any k8s.io/api object, deterministically for a seed; the types
// whose random bytes do not encode (quantities, times, managed fields) get valid
// values.
func randomFiller(seed int64) *randfill.Filler {
	return randfill.NewWithSeed(seed).NilChance(0.2).NumElements(1, 2).Funcs(
		func(q *resource.Quantity, c randfill.Continue) {
			*q = *resource.NewQuantity(c.Int63n(1000), resource.DecimalSI)
		},
		func(tm *metav1.Time, c randfill.Continue) { *tm = metav1.Unix(c.Int63n(1<<32), 0) },
		func(f *metav1.FieldsV1, c randfill.Continue) { f.SetRawString(`{"f:metadata":{}}`) },
	)
}
