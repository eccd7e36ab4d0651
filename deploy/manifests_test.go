package deploy

// These tests render the kustomizations the way `kubectl apply -k` does (kustomize's
// own library, no network, no cluster) and check the promises the manifests make:
// least privilege, a webhook that only ever sees objects with sysctls and never the
// control plane's namespaces, and a restricted, highly available Deployment.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/provider"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/deploy/apicalls"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

const (
	namespace     = "sysctl-placement"
	image         = "ghcr.io/sysctl-placement/sysctl-placement"
	tlsSecret     = "sysctl-placement-tls"
	caSecret      = "sysctl-placement-ca"
	webhookConfig = "sysctl-placement"
	// serveShutdownGrace is the default of `serve --shutdown-grace`.
	serveShutdownGrace = 20 * time.Second
)

// overlays are the kustomizations a user applies; base is rendered too, because the
// overlays must not be what makes it valid.
var overlays = []string{"overlays/self-signed", "overlays/cert-manager"}

// rendered is one kustomization's output, decoded.
type rendered struct {
	dir       string
	resources resmap.ResMap
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return rendered{dir: dir, resources: m}
}

// objects returns every resource of kind, decoded strictly into out's element type.
func objects[T any](t *testing.T, r rendered, kind string) []T {
	t.Helper()
	var out []T
	for _, res := range r.resources.Resources() {
		if res.GetKind() != kind {
			continue
		}
		raw, err := res.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s %s: %v", r.dir, kind, res.GetName(), err)
		}
		var obj T
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("%s: %s %s does not decode as a %s (misspelt or misplaced field?): %v", r.dir, kind, res.GetName(), kind, err)
		}
		out = append(out, obj)
	}
	return out
}

// one returns the single resource of kind named name.
func one[T any](t *testing.T, r rendered, kind, name string) T {
	t.Helper()
	var found []T
	for _, res := range r.resources.Resources() {
		if res.GetKind() == kind && res.GetName() == name {
			raw, err := res.MarshalJSON()
			if err != nil {
				t.Fatalf("%s: %s %s: %v", r.dir, kind, name, err)
			}
			var obj T
			if err := json.Unmarshal(raw, &obj); err != nil {
				t.Fatalf("%s: %s %s: %v", r.dir, kind, name, err)
			}
			found = append(found, obj)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: want exactly one %s %q, found %d", r.dir, kind, name, len(found))
	}
	return found[0]
}

func TestKustomizations(t *testing.T) {
	t.Run("every kustomization renders and each object decodes as its Kubernetes type", func(t *testing.T) {
		for _, dir := range append([]string{"base"}, overlays...) {
			t.Run(dir, func(t *testing.T) {
				r := render(t, dir)
				// Strict decoding catches fields the API server would drop or refuse.
				objects[corev1.Namespace](t, r, "Namespace")
				objects[corev1.ServiceAccount](t, r, "ServiceAccount")
				objects[corev1.ConfigMap](t, r, "ConfigMap")
				objects[corev1.Service](t, r, "Service")
				objects[corev1.ResourceQuota](t, r, "ResourceQuota")
				objects[rbacv1.ClusterRole](t, r, "ClusterRole")
				objects[rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding")
				objects[rbacv1.Role](t, r, "Role")
				objects[rbacv1.RoleBinding](t, r, "RoleBinding")
				objects[appsv1.Deployment](t, r, "Deployment")
				objects[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget")
				objects[batchv1.Job](t, r, "Job")
				objects[batchv1.CronJob](t, r, "CronJob")
				objects[admissionregistrationv1.MutatingWebhookConfiguration](t, r, "MutatingWebhookConfiguration")
				objects[admissionregistrationv1.ValidatingWebhookConfiguration](t, r, "ValidatingWebhookConfiguration")
				for _, res := range r.resources.Resources() {
					if res.GetNamespace() != "" && res.GetNamespace() != namespace {
						t.Errorf("%s %s is in namespace %q; everything namespaced belongs in %s", res.GetKind(), res.GetName(), res.GetNamespace(), namespace)
					}
				}
			})
		}
	})
}

// grants spells each (API group, resource, verb, resource name) the rules allow as
// deploy/apicalls spells a call.
func grants(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, apicalls.Call{Verb: v, Group: g, Resource: res, Name: n}.Grant())
					}
				}
			}
		}
		if len(r.NonResourceURLs) > 0 {
			out = append(out, "nonResourceURLs "+strings.Join(r.NonResourceURLs, ","))
		}
	}
	sort.Strings(out)
	return out
}

func assertGrants(t *testing.T, what string, rules []rbacv1.PolicyRule, want []string) {
	t.Helper()
	got := grants(rules)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s grants\n  %s\nwant exactly\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// callGrants is what deploy/apicalls says identity needs, namespaced or cluster-wide,
// in the spelling of grants.
func callGrants(identity apicalls.Identity, namespaced bool) []string {
	var out []string
	for _, c := range apicalls.Of(identity, namespaced) {
		if g := c.Grant(); !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// rbacFile decodes the objects of one manifest file that is not a kustomization of
// its own (a component's).
func rbacFile(t *testing.T, path string) rendered {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := resmap.NewFactory(provider.NewDefaultDepProvider().GetResourceFactory()).NewResMapFromBytes(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rendered{dir: path, resources: m}
}

func TestRBAC(t *testing.T) {
	// Each identity's roles grant exactly the calls deploy/apicalls lists for it: a grant
	// missing fails here (and, for serve, in the end-to-end tests as a forbidden call); a
	// grant no code path uses fails here too, because the table holds only calls the code
	// makes (deploy/apicalls' own test).
	t.Run("each identity is granted exactly the calls it makes", func(t *testing.T) {
		base, selfSigned := render(t, "base"), render(t, "overlays/self-signed")
		for _, tc := range []struct {
			identity apicalls.Identity
			r        rendered
			kind     string
			// names are the roles that together grant the identity's calls of that kind.
			names          []string
			namespaced     bool
			serviceAccount string
		}{
			{apicalls.Serve, base, "ClusterRole", []string{"sysctl-placement"}, false, "sysctl-placement"},
			{apicalls.Serve, base, "Role", []string{"sysctl-placement-leader-election", discoveryTokenRole}, true, "sysctl-placement"},
			{apicalls.MetricsSecure, rbacFile(t, "components/metrics-secure/rbac.yaml"), "ClusterRole", []string{"sysctl-placement-metrics-auth"}, false, "sysctl-placement"},
			{apicalls.ServePolicy, rbacFile(t, "components/policy-backend/rbac.yaml"), "ClusterRole", []string{"sysctl-placement-policy-backend"}, false, "sysctl-placement"},
			{apicalls.ServePolicy, rbacFile(t, "components/policy-backend/rbac.yaml"), "Role", []string{"sysctl-placement-policy-backend"}, true, "sysctl-placement"},
			{apicalls.Certs, selfSigned, "ClusterRole", []string{"sysctl-placement-certs"}, false, "sysctl-placement-certs"},
			{apicalls.Certs, selfSigned, "Role", []string{"sysctl-placement-certs"}, true, "sysctl-placement-certs"},
			{apicalls.Audit, render(t, "audit"), "ClusterRole", []string{"sysctl-placement-audit"}, false, ""},
			{apicalls.Discovery, base, "ClusterRole", []string{"sysctl-placement-discovery"}, false, "sysctl-placement-discovery"},
		} {
			t.Run(string(tc.identity)+" "+tc.kind+" "+strings.Join(tc.names, "+"), func(t *testing.T) {
				var rules []rbacv1.PolicyRule
				for _, name := range tc.names {
					if tc.kind == "Role" {
						role := one[rbacv1.Role](t, tc.r, tc.kind, name)
						if role.Namespace != apicalls.Namespace {
							t.Errorf("Role %s is in namespace %q; want %s", role.Name, role.Namespace, apicalls.Namespace)
						}
						rules = append(rules, role.Rules...)
					} else {
						rules = append(rules, one[rbacv1.ClusterRole](t, tc.r, tc.kind, name).Rules...)
					}
				}
				assertGrants(t, tc.kind+" "+strings.Join(tc.names, "+"), rules, callGrants(tc.identity, tc.namespaced))
				if tc.serviceAccount == "" {
					return // bound by whoever runs it
				}
				want := rbacv1.Subject{Kind: "ServiceAccount", Name: tc.serviceAccount, Namespace: namespace}
				for _, name := range tc.names {
					bound := false
					for _, res := range tc.r.resources.Resources() {
						if res.GetKind() != tc.kind+"Binding" {
							continue
						}
						b := one[rbacv1.RoleBinding](t, tc.r, res.GetKind(), res.GetName())
						if b.RoleRef.Kind != tc.kind || b.RoleRef.Name != name {
							continue
						}
						if len(b.Subjects) != 1 || b.Subjects[0] != want {
							t.Errorf("%s %s binds %s to %v; want only %v", res.GetKind(), b.Name, name, b.Subjects, want)
						}
						bound = true
					}
					if !bound {
						t.Errorf("no %sBinding binds %s %s to %v", tc.kind, tc.kind, name, want)
					}
				}
			})
		}
		t.Run("the webhook's namespace holds only the leader-election Role of serve", func(t *testing.T) {
			roles := objects[rbacv1.Role](t, base, "Role")
			roles = slices.DeleteFunc(roles, func(r rbacv1.Role) bool { return r.Name == discoveryTokenRole }) // discovery_rbac_test.go
			if len(roles) != 1 {
				t.Errorf("base has %d Roles; want only the leader-election Role", len(roles))
			}
		})
		t.Run("the certs Job and CronJob run as their own ServiceAccount", func(t *testing.T) {
			for _, kind := range []string{"Job", "CronJob"} {
				for _, spec := range podSpecsOf(t, selfSigned, kind) {
					if spec.ServiceAccountName != "sysctl-placement-certs" {
						t.Errorf("the certs %s runs as %q; want its own ServiceAccount sysctl-placement-certs", kind, spec.ServiceAccountName)
					}
				}
			}
		})
	})

	t.Run("no overlay grants wildcards or the proxy of nodes or secrets cluster-wide", func(t *testing.T) {
		for _, dir := range overlays {
			r := render(t, dir)
			check := func(what string, rules []rbacv1.PolicyRule, clusterWide bool) {
				for _, g := range grants(rules) {
					if strings.Contains(g, "*") {
						t.Errorf("%s: %s grants a wildcard: %s", dir, what, g)
					}
					if strings.Contains(g, "nodes/proxy") {
						t.Errorf("%s: %s grants nodes/proxy, which reaches every pod on a node: %s", dir, what, g)
					}
					if clusterWide && strings.Contains(g, " secrets") {
						t.Errorf("%s: %s grants secrets cluster-wide: %s", dir, what, g)
					}
				}
			}
			for _, cr := range objects[rbacv1.ClusterRole](t, r, "ClusterRole") {
				check("ClusterRole "+cr.Name, cr.Rules, true)
				if cr.AggregationRule != nil {
					t.Errorf("%s: ClusterRole %s aggregates other roles; grants must be explicit", dir, cr.Name)
				}
			}
			for _, role := range objects[rbacv1.Role](t, r, "Role") {
				check("Role "+role.Name, role.Rules, false)
			}
			for _, b := range objects[rbacv1.RoleBinding](t, r, "RoleBinding") {
				if b.RoleRef.Kind == "ClusterRole" {
					t.Errorf("%s: RoleBinding %s binds ClusterRole %s; keep namespaced grants in a Role", dir, b.Name, b.RoleRef.Name)
				}
			}
		}
	})
}

// webhookEntry is what the checks need of a mutating or validating webhook.
type webhookEntry struct {
	config             string // "MutatingWebhookConfiguration sysctl-placement"
	path               string // the path the entry must call
	name               string
	clientConfig       admissionregistrationv1.WebhookClientConfig
	rules              []admissionregistrationv1.RuleWithOperations
	failurePolicy      *admissionregistrationv1.FailurePolicyType
	matchPolicy        *admissionregistrationv1.MatchPolicyType
	namespaceSelector  *metav1.LabelSelector
	sideEffects        *admissionregistrationv1.SideEffectClass
	timeoutSeconds     *int32
	reviewVersions     []string
	mutating           bool
	reinvocationPolicy *admissionregistrationv1.ReinvocationPolicyType
	matchConditions    []admissionregistrationv1.MatchCondition
}

func (w webhookEntry) String() string { return w.config + ": webhook " + w.name }

func webhooks(t *testing.T, r rendered) []webhookEntry {
	t.Helper()
	var out []webhookEntry
	for _, c := range objects[admissionregistrationv1.MutatingWebhookConfiguration](t, r, "MutatingWebhookConfiguration") {
		for _, w := range c.Webhooks {
			out = append(out, webhookEntry{
				config: "MutatingWebhookConfiguration " + c.Name, path: "/mutate", name: w.Name,
				clientConfig: w.ClientConfig, rules: w.Rules, failurePolicy: w.FailurePolicy,
				matchPolicy: w.MatchPolicy, namespaceSelector: w.NamespaceSelector,
				sideEffects: w.SideEffects, timeoutSeconds: w.TimeoutSeconds,
				reviewVersions: w.AdmissionReviewVersions, mutating: true,
				reinvocationPolicy: w.ReinvocationPolicy, matchConditions: w.MatchConditions,
			})
		}
	}
	for _, c := range objects[admissionregistrationv1.ValidatingWebhookConfiguration](t, r, "ValidatingWebhookConfiguration") {
		for _, w := range c.Webhooks {
			out = append(out, webhookEntry{
				config: "ValidatingWebhookConfiguration " + c.Name, path: "/validate", name: w.Name,
				clientConfig: w.ClientConfig, rules: w.Rules, failurePolicy: w.FailurePolicy,
				matchPolicy: w.MatchPolicy, namespaceSelector: w.NamespaceSelector,
				sideEffects: w.SideEffects, timeoutSeconds: w.TimeoutSeconds,
				reviewVersions: w.AdmissionReviewVersions, matchConditions: w.MatchConditions,
			})
		}
	}
	return out
}

func TestBothWebhookConfigurationsExist(t *testing.T) {
	for _, dir := range overlays {
		r := render(t, dir)
		one[admissionregistrationv1.MutatingWebhookConfiguration](t, r, "MutatingWebhookConfiguration", webhookConfig)
		one[admissionregistrationv1.ValidatingWebhookConfiguration](t, r, "ValidatingWebhookConfiguration", webhookConfig)
	}
}

func TestWebhookConfigurations(t *testing.T) {
	t.Run("every webhook answers fast and skips the control plane and has no dry-run side effects", func(t *testing.T) {
		excluded := []string{"kube-system", "kube-node-lease", namespace}
		for _, dir := range overlays {
			for _, w := range webhooks(t, render(t, dir)) {
				t.Run(dir+"/"+w.String(), func(t *testing.T) {
					if w.timeoutSeconds == nil || *w.timeoutSeconds > 5 || *w.timeoutSeconds < 1 {
						t.Errorf("timeoutSeconds = %v; want 1..5 so a sick replica cannot stall creates for long", deref(w.timeoutSeconds))
					}
					if w.sideEffects == nil || *w.sideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
						t.Errorf("sideEffects = %v; want NoneOnDryRun", deref(w.sideEffects))
					}
					if w.matchPolicy == nil || *w.matchPolicy != admissionregistrationv1.Equivalent {
						t.Errorf("matchPolicy = %v; want Equivalent", deref(w.matchPolicy))
					}
					if !slices.Equal(w.reviewVersions, []string{"v1"}) {
						t.Errorf("admissionReviewVersions = %v; want [v1]", w.reviewVersions)
					}
					if w.mutating && (w.reinvocationPolicy == nil || *w.reinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy) {
						t.Errorf("reinvocationPolicy = %v; want IfNeeded, so the pod is planned again after later webhooks", deref(w.reinvocationPolicy))
					}
					if w.failurePolicy == nil {
						t.Errorf("failurePolicy is unset; say Fail or Ignore, with the reason in a comment")
					}
					svc := w.clientConfig.Service
					if svc == nil || svc.Name != "sysctl-placement" || svc.Namespace != namespace || deref(svc.Path) != w.path || deref(svc.Port) != int32(443) {
						t.Errorf("clientConfig.service = %+v; want sysctl-placement.%s:443%s", svc, namespace, w.path)
					}
					if w.clientConfig.URL != nil {
						t.Errorf("clientConfig.url is set; the API server must reach the webhook through its Service")
					}
					var notIn []string
					if w.namespaceSelector != nil {
						for _, e := range w.namespaceSelector.MatchExpressions {
							if e.Key == corev1.LabelMetadataName && e.Operator == metav1.LabelSelectorOpNotIn {
								notIn = append(notIn, e.Values...)
							}
						}
					}
					for _, ns := range excluded {
						if !slices.Contains(notIn, ns) {
							t.Errorf("namespaceSelector does not exclude %s (kubernetes.io/metadata.name NotIn %v)", ns, notIn)
						}
					}
					if len(w.matchConditions) == 0 {
						t.Errorf("no matchConditions: every object of the rules would be sent, not only those with sysctls")
					}
				})
			}
		}
	})

	t.Run("each handled kind is sent to exactly one mutating and one validating webhook", func(t *testing.T) {
		all := webhooks(t, render(t, "overlays/self-signed"))
		for _, k := range kinds {
			for _, op := range []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update, admissionregistrationv1.Delete} {
				matched := entriesFor(all, k, op)
				var mutating, validating int
				for _, w := range matched {
					if w.mutating {
						mutating++
					} else {
						validating++
					}
					wantFail := k.failClosed
					if got := *w.failurePolicy == admissionregistrationv1.Fail; got != wantFail {
						t.Errorf("%s for %s: failurePolicy %s; want Fail only for pods (templates are covered by their pods)", w, k.kind, *w.failurePolicy)
					}
				}
				want := 0
				if slices.Contains(k.operations, op) {
					want = 1
				}
				if mutating != want || validating != want {
					t.Errorf("%s %s reaches %d mutating and %d validating webhooks; want %d of each", op, k.kind, mutating, validating, want)
				}
			}
		}
	})

	t.Run("match conditions send only objects that ask for sysctls", func(t *testing.T) {
		env := celEnv(t)
		all := webhooks(t, render(t, "overlays/self-signed"))
		cases := []struct {
			name    string
			podSpec map[string]any
			want    bool
		}{
			{"a pod spec with unsafe sysctls is sent", map[string]any{"securityContext": map[string]any{"sysctls": sysctls("kernel.sem", "kernel.shmmax")}}, true},
			{"a pod spec with only a safe sysctl is sent (placement decides what safe means for each pool)", map[string]any{"securityContext": map[string]any{"sysctls": sysctls("net.ipv4.ip_local_port_range")}}, true},
			{"a pod spec without a securityContext is not sent", map[string]any{"containers": []any{map[string]any{"name": "app"}}}, false},
			{"a pod spec with a securityContext but no sysctls is not sent", map[string]any{"securityContext": map[string]any{"runAsNonRoot": true}}, false},
			{"a pod spec with an empty sysctl list is not sent", map[string]any{"securityContext": map[string]any{"sysctls": []any{}}}, false},
			{"an object without a pod spec is not sent, and no condition errors", nil, false},
			{"an empty pod spec is not sent", map[string]any{}, false},
		}
		for _, k := range kinds {
			for _, tc := range cases {
				t.Run(k.kind+"/"+tc.name, func(t *testing.T) {
					obj := k.object(tc.podSpec)
					for _, w := range entriesFor(all, k, admissionregistrationv1.Create) {
						if got := sendsObject(t, env, w, obj); got != tc.want {
							t.Errorf("%s sends %v = %v; want %v", w, obj, got, tc.want)
						}
					}
				})
			}
		}
		t.Run("a pod already bound to a node (mirror pod) is not sent", func(t *testing.T) {
			pod := kinds[0].object(map[string]any{"nodeName": "node-1", "securityContext": map[string]any{"sysctls": sysctls("kernel.sem")}})
			for _, w := range entriesFor(all, kinds[0], admissionregistrationv1.Create) {
				if sendsObject(t, env, w, pod) {
					t.Errorf("%s sends a pod with spec.nodeName set; the webhook skips those, so an outage must not block them", w)
				}
			}
		})
		t.Run("a pod with an empty nodeName is treated as unbound", func(t *testing.T) {
			pod := kinds[0].object(map[string]any{"nodeName": "", "securityContext": map[string]any{"sysctls": sysctls("kernel.sem")}})
			for _, w := range entriesFor(all, kinds[0], admissionregistrationv1.Create) {
				if !sendsObject(t, env, w, pod) {
					t.Errorf("%s does not send a pod with sysctls and an empty nodeName", w)
				}
			}
		})
	})
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// kindSample says where a kind keeps its pod's sysctls and which resource it is.
type kindSample struct {
	kind, group, resource string
	// podSpecPath is the path of the pod spec inside the object.
	podSpecPath []string
	operations  []admissionregistrationv1.OperationType
	failClosed  bool // pods: an outage must not admit them unplaced
}

var (
	createOnly      = []admissionregistrationv1.OperationType{admissionregistrationv1.Create}
	createAndUpdate = []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	templatePath    = []string{"spec", "template", "spec"}
)

// kinds are every kind the webhook handles (webhook/review/object.go).
var kinds = []kindSample{
	{"Pod", "", "pods", []string{"spec"}, createOnly, true},
	{"Deployment", "apps", "deployments", templatePath, createAndUpdate, false},
	{"StatefulSet", "apps", "statefulsets", templatePath, createAndUpdate, false},
	{"DaemonSet", "apps", "daemonsets", templatePath, createAndUpdate, false},
	{"ReplicaSet", "apps", "replicasets", templatePath, createAndUpdate, false},
	{"Job", "batch", "jobs", templatePath, createAndUpdate, false},
	{"ReplicationController", "", "replicationcontrollers", templatePath, createAndUpdate, false},
	{"CronJob", "batch", "cronjobs", []string{"spec", "jobTemplate", "spec", "template", "spec"}, createAndUpdate, false},
	{"PodTemplate", "", "podtemplates", []string{"template", "spec"}, createAndUpdate, false},
}

// object builds a sample of k whose pod spec is podSpec (nil: no pod spec at all).
func (k kindSample) object(podSpec map[string]any) map[string]any {
	obj := map[string]any{
		"apiVersion": strings.TrimPrefix(k.group+"/v1", "/"),
		"kind":       k.kind,
		"metadata":   map[string]any{"name": "sample", "namespace": "team-a"},
	}
	if podSpec == nil {
		return obj
	}
	cur := obj
	for _, p := range k.podSpecPath[:len(k.podSpecPath)-1] {
		next := map[string]any{}
		cur[p] = next
		cur = next
	}
	cur[k.podSpecPath[len(k.podSpecPath)-1]] = podSpec
	return obj
}

// entriesFor returns the webhook entries whose rules match k's resource and operation.
func entriesFor(all []webhookEntry, k kindSample, op admissionregistrationv1.OperationType) []webhookEntry {
	var out []webhookEntry
	for _, w := range all {
		for _, r := range w.rules {
			if slices.Contains(r.APIGroups, k.group) && slices.Contains(r.Resources, k.resource) &&
				slices.Contains(r.APIVersions, "v1") && slices.Contains(r.Operations, op) {
				out = append(out, w)
				break
			}
		}
	}
	return out
}

// celEnv declares the variables the API server gives matchConditions. object and
// oldObject are untyped there too; request is the AdmissionRequest.
func celEnv(t *testing.T) *cel.Env {
	t.Helper()
	env, err := cel.NewEnv(
		cel.Variable("object", cel.DynType),
		cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType),
	)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// sendsObject evaluates every matchCondition of w against obj the way the API
// server does: the webhook is called only when all are true, and an evaluation error
// is a failure of the webhook (failurePolicy applies), which these expressions must
// never cause.
func sendsObject(t *testing.T, env *cel.Env, w webhookEntry, obj map[string]any) bool {
	t.Helper()
	all := true
	for _, mc := range w.matchConditions {
		ast, iss := env.Compile(mc.Expression)
		if iss.Err() != nil {
			t.Fatalf("%s: matchCondition %s does not compile: %v", w, mc.Name, iss.Err())
		}
		if ast.OutputType() != cel.BoolType {
			t.Fatalf("%s: matchCondition %s yields %s; want bool", w, mc.Name, ast.OutputType())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := prg.Eval(map[string]any{"object": obj, "oldObject": nil, "request": map[string]any{}})
		if err != nil {
			t.Fatalf("%s: matchCondition %s fails on %v: %v (an error counts as a webhook failure)", w, mc.Name, obj, err)
		}
		if out.Value() != true {
			all = false
		}
	}
	return all
}

func sysctls(names ...string) []any {
	var out []any
	for _, n := range names {
		out = append(out, map[string]any{"name": n, "value": "1"})
	}
	return out
}

func TestTheExampleWorkloadsWithSysctlsWouldBeSent(t *testing.T) {
	env := celEnv(t)
	all := webhooks(t, render(t, "overlays/self-signed"))
	entries, err := Examples.ReadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := Examples.ReadFile("examples/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			kindName, _ := obj["kind"].(string)
			i := slices.IndexFunc(kinds, func(k kindSample) bool { return k.kind == kindName })
			if i < 0 {
				continue // the PlacementConfig
			}
			for _, w := range entriesFor(all, kinds[i], admissionregistrationv1.Create) {
				if !sendsObject(t, env, w, obj) {
					t.Errorf("%s: %s does not send this example %s, which asks for sysctls", e.Name(), w, kindName)
				}
			}
		}
	}
}

func podSpecsOf(t *testing.T, r rendered, kind string) []corev1.PodSpec {
	t.Helper()
	var out []corev1.PodSpec
	switch kind {
	case "Deployment":
		for _, d := range objects[appsv1.Deployment](t, r, kind) {
			out = append(out, d.Spec.Template.Spec)
		}
	case "Job":
		for _, j := range objects[batchv1.Job](t, r, kind) {
			out = append(out, j.Spec.Template.Spec)
		}
	case "CronJob":
		for _, j := range objects[batchv1.CronJob](t, r, kind) {
			out = append(out, j.Spec.JobTemplate.Spec.Template.Spec)
		}
	default:
		t.Fatalf("no pod spec for kind %s", kind)
	}
	return out
}

// assertRestricted checks the restricted Pod Security Standard and a little more
// (a read-only root filesystem), for a pod spec.
func assertRestricted(t *testing.T, what string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot is not true", what)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod securityContext.seccompProfile is not RuntimeDefault", what)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: uses a host namespace", what)
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: container %s has no securityContext", what, c.Name)
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: container %s: allowPrivilegeEscalation is not false", what, c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: container %s: readOnlyRootFilesystem is not true", what, c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: container %s is privileged", what, c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: container %s: capabilities %+v; want drop [ALL] and nothing added", what, c.Name, sc.Capabilities)
		}
		if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			t.Errorf("%s: container %s runs as root", what, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: container %s: resources %+v; want cpu and memory requests and a memory limit", what, c.Name, c.Resources)
		}
		if !strings.HasPrefix(c.Image, image+":") || strings.HasSuffix(c.Image, ":") || strings.HasSuffix(c.Image, ":latest") {
			t.Errorf("%s: container %s: image %q; want %s with a tag set through kustomize images:", what, c.Name, c.Image, image)
		}
	}
}

func TestEveryPodTheOverlaysRunIsRestricted(t *testing.T) {
	for _, dir := range overlays {
		r := render(t, dir)
		for _, kind := range []string{"Deployment", "Job", "CronJob"} {
			for _, spec := range podSpecsOf(t, r, kind) {
				assertRestricted(t, dir+" "+kind, spec)
			}
		}
		ns := one[corev1.Namespace](t, r, "Namespace", namespace)
		if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("%s: namespace %s does not enforce the restricted Pod Security Standard", dir, namespace)
		}
	}
}

func TestDeployment(t *testing.T) {
	t.Run("the deployment serves the webhook highly available", func(t *testing.T) {
		r := render(t, "overlays/self-signed")
		d := one[appsv1.Deployment](t, r, "Deployment", "sysctl-placement")
		spec := d.Spec.Template.Spec
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("replicas = %v; want at least 2", deref(d.Spec.Replicas))
		}
		if spec.PriorityClassName != "system-cluster-critical" {
			t.Errorf("priorityClassName = %q; want system-cluster-critical", spec.PriorityClassName)
		}
		if spec.ServiceAccountName != "sysctl-placement" {
			t.Errorf("serviceAccountName = %q; want sysctl-placement", spec.ServiceAccountName)
		}
		if g := spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= serveShutdownGrace {
			t.Errorf("terminationGracePeriodSeconds = %v; want more than serve's --shutdown-grace (%s)", deref(g), serveShutdownGrace)
		}
		var spreadsHosts bool
		for _, c := range spec.TopologySpreadConstraints {
			spreadsHosts = spreadsHosts || c.TopologyKey == corev1.LabelHostname
		}
		if !spreadsHosts {
			t.Errorf("no topologySpreadConstraint on %s", corev1.LabelHostname)
		}
		if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil || len(spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
			t.Errorf("no preferred podAntiAffinity")
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%d containers; want the webhook only", len(spec.Containers))
		}
		c := spec.Containers[0]
		wantArgs := []string{"serve", "--config", "/etc/sysctl-placement/config.yaml",
			"--tls-cert-file", "/tls/tls.crt", "--tls-private-key-file", "/tls/tls.key",
			"--listen", ":8443", "--metrics-listen", ":8080"}
		if !slices.Equal(c.Args, wantArgs) {
			t.Errorf("args = %q; want %q", c.Args, wantArgs)
		}
		for name, probe := range map[string]*corev1.Probe{"/readyz": c.ReadinessProbe, "/healthz": c.LivenessProbe} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name || probe.HTTPGet.Port.String() != "metrics" {
				t.Errorf("probe %s = %+v; want httpGet %s on the metrics port", name, probe, name)
			}
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if ports["https"] != 8443 || ports["metrics"] != 8080 {
			t.Errorf("container ports = %v; want https 8443 and metrics 8080", ports)
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			if m.SubPath != "" {
				t.Errorf("volume %s is mounted with subPath; the kubelet never updates those, so reloads would not happen", m.Name)
			}
			mounts[m.MountPath] = m.Name
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		if v := volumes[mounts["/tls"]]; v.Secret == nil || v.Secret.SecretName != tlsSecret {
			t.Errorf("/tls is %+v; want Secret %s", v, tlsSecret)
		}
		v := volumes[mounts["/etc/sysctl-placement"]]
		if v.ConfigMap == nil {
			t.Fatalf("/etc/sysctl-placement is %+v; want the config ConfigMap", v)
		}
		cm := one[corev1.ConfigMap](t, r, "ConfigMap", v.ConfigMap.Name)
		cfg, err := scheduling.ParseConfig([]byte(cm.Data["config.yaml"]))
		if err == nil {
			_, err = scheduling.Compile(cfg)
		}
		if err != nil {
			t.Errorf("ConfigMap %s: config.yaml is not a valid PlacementConfig, the webhook would never become ready: %v", cm.Name, err)
		}

		pdb := one[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget", "sysctl-placement")
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
			t.Errorf("PodDisruptionBudget minAvailable = %v; want 1", deref(pdb.Spec.MinAvailable))
		}
		assertSelects(t, "PodDisruptionBudget", pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels)

		svc := one[corev1.Service](t, r, "Service", "sysctl-placement")
		assertSelects(t, "Service", svc.Spec.Selector, d.Spec.Template.Labels)
		svcPorts := map[int32]string{}
		for _, p := range svc.Spec.Ports {
			svcPorts[p.Port] = p.TargetPort.String()
		}
		if svcPorts[443] != "https" || svcPorts[8080] != "metrics" {
			t.Errorf("Service ports = %v; want 443 → https (8443) and 8080 → metrics", svcPorts)
		}
	})

	// GOMEMLIMIT keeps the Go runtime's memory under the container's limit, with room for
	// what the runtime does not count, whatever limit the admin sets.
	t.Run("GOMEMLIMIT follows the memory limit of the container with headroom", func(t *testing.T) {
		for _, dir := range append([]string{"base"}, overlays...) {
			d := one[appsv1.Deployment](t, render(t, dir), "Deployment", "sysctl-placement")
			for _, limit := range []string{"", "100Mi", "256Mi", "1Gi", "3Gi"} {
				c := d.Spec.Template.Spec.Containers[0]
				if limit != "" {
					c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(limit)}
				}
				mem := c.Resources.Limits[corev1.ResourceMemory]
				got := kubeletEnv(t, c)["GOMEMLIMIT"]
				bytes, err := strconv.ParseInt(got, 10, 64)
				if err != nil {
					t.Errorf("%s, limit %s: GOMEMLIMIT = %q; want a number of bytes derived from limits.memory", dir, mem.String(), got)
					continue
				}
				if ratio := float64(bytes) / float64(mem.Value()); ratio < 0.9 || ratio > 0.96 {
					t.Errorf("%s, limit %s: GOMEMLIMIT = %s, %.3f of the limit; want 90-96%%, below the limit by the memory the runtime does not count", dir, mem.String(), got, ratio)
				}
			}
		}
	})

	// minAvailable 1 with one replica refuses every eviction, and so every drain of the
	// replica's node.
	t.Run("the pod disruption budget agrees with the shipped replicas", func(t *testing.T) {
		for _, dir := range append([]string{"base"}, overlays...) {
			r := render(t, dir)
			d := one[appsv1.Deployment](t, r, "Deployment", "sysctl-placement")
			replicas := int32(1)
			if d.Spec.Replicas != nil {
				replicas = *d.Spec.Replicas
			}
			for _, pdb := range objects[policyv1.PodDisruptionBudget](t, r, "PodDisruptionBudget") {
				if replicas <= 1 {
					t.Errorf("%s: %d replica and PodDisruptionBudget %s: no drain could evict it; delete the budget with the replicas", dir, replicas, pdb.Name)
				} else if pdb.Spec.MinAvailable == nil || int32(pdb.Spec.MinAvailable.IntValue()) >= replicas {
					t.Errorf("%s: PodDisruptionBudget %s minAvailable %v with %d replicas blocks drains", dir, pdb.Name, deref(pdb.Spec.MinAvailable), replicas)
				}
			}
		}
	})
}

// kubeletEnv is the container's environment as the kubelet resolves it: values with
// $(VAR) references to earlier variables expanded, and resourceFieldRefs to
// limits.memory as the limit divided by the divisor, rounded up.
func kubeletEnv(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = ref.ReplaceAllStringFunc(e.Value, func(m string) string {
				if v, ok := env[m[2:len(m)-1]]; ok {
					return v
				}
				return m // the kubelet leaves an unknown reference as it is
			})
		case e.ValueFrom.ResourceFieldRef != nil:
			f := e.ValueFrom.ResourceFieldRef
			limit, ok := c.Resources.Limits[corev1.ResourceMemory]
			if f.Resource != "limits.memory" || !ok {
				t.Fatalf("env %s: resourceFieldRef %s; this test resolves only limits.memory of a container that sets it", e.Name, f.Resource)
			}
			divisor := f.Divisor
			if divisor.IsZero() {
				divisor = resource.MustParse("1")
			}
			env[e.Name] = strconv.FormatInt((limit.Value()+divisor.Value()-1)/divisor.Value(), 10)
		}
	}
	return env
}

// The CA's key is for `certs` (or cert-manager) alone: the replicas get the serving
// pair only, never the CA Secret, and never ca.key of a Secret an older `certs` wrote.
func TestNoWebhookReplicaMountsTheCAPrivateKey(t *testing.T) {
	for _, dir := range append([]string{"base"}, overlays...) {
		d := one[appsv1.Deployment](t, render(t, dir), "Deployment", "sysctl-placement")
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			if v.Secret.SecretName != tlsSecret {
				t.Errorf("%s: the webhook mounts Secret %s; want only %s", dir, v.Secret.SecretName, tlsSecret)
			}
			var keys []string
			for _, item := range v.Secret.Items {
				keys = append(keys, item.Key)
			}
			if !slices.Equal(keys, []string{"tls.crt", "tls.key"}) {
				t.Errorf("%s: Secret volume %s projects %q (none: the whole Secret); want items tls.crt and tls.key only", dir, v.Name, keys)
			}
		}
	}
}

func assertSelects(t *testing.T, what string, selector, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("%s has an empty selector", what)
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s selects %s=%s, which the webhook's pods do not carry (%v)", what, k, v, labels)
		}
	}
}

func TestServingCertificate(t *testing.T) {
	t.Run("the self-signed overlay bootstraps the secret the deployment mounts", func(t *testing.T) {
		r := render(t, "overlays/self-signed")
		for _, kind := range []string{"Job", "CronJob"} {
			specs := podSpecsOf(t, r, kind)
			if len(specs) != 1 {
				t.Fatalf("%d %ss; want one running `certs`", len(specs), kind)
			}
			args := specs[0].Containers[0].Args
			flags := map[string]string{}
			for i := 1; i+1 < len(args); i += 2 {
				flags[args[i]] = args[i+1]
			}
			if args[0] != "certs" || flags["--secret"] != tlsSecret || flags["--ca-secret"] != caSecret || flags["--namespace"] != namespace ||
				flags["--service"] != "sysctl-placement" || flags["--mutating-webhook"] != webhookConfig || flags["--validating-webhook"] != webhookConfig {
				t.Errorf("%s args = %q; want certs for Secrets %s and %s, Service sysctl-placement and both webhook configurations %s", kind, args, tlsSecret, caSecret, webhookConfig)
			}
		}
		for _, w := range webhooks(t, r) {
			if len(w.clientConfig.CABundle) != 0 {
				t.Errorf("%s has a caBundle in the manifests; `certs` owns it, and apply would fight it", w)
			}
		}
	})

	t.Run("the cert-manager overlay injects the CA of a certificate for the service names", func(t *testing.T) {
		r := render(t, "overlays/cert-manager")
		var certificates []map[string]any
		for _, res := range r.resources.Resources() {
			if res.GetKind() == "Certificate" {
				m, err := res.Map()
				if err != nil {
					t.Fatal(err)
				}
				certificates = append(certificates, m)
			}
		}
		var serving map[string]any
		for _, c := range certificates {
			if spec, _ := c["spec"].(map[string]any); spec["secretName"] == tlsSecret {
				serving = c
			}
		}
		if serving == nil {
			t.Fatalf("no Certificate writes Secret %s", tlsSecret)
		}
		spec := serving["spec"].(map[string]any)
		var names []string
		for _, n := range spec["dnsNames"].([]any) {
			names = append(names, n.(string))
		}
		for _, want := range []string{"sysctl-placement.sysctl-placement.svc", "sysctl-placement.sysctl-placement.svc.cluster.local"} {
			if !slices.Contains(names, want) {
				t.Errorf("the serving Certificate's dnsNames %v lack %s, the name the API server calls", names, want)
			}
		}
		meta := serving["metadata"].(map[string]any)
		wantInject := fmt.Sprintf("%s/%s", meta["namespace"], meta["name"])
		m := one[admissionregistrationv1.MutatingWebhookConfiguration](t, r, "MutatingWebhookConfiguration", webhookConfig)
		v := one[admissionregistrationv1.ValidatingWebhookConfiguration](t, r, "ValidatingWebhookConfiguration", webhookConfig)
		for kind, annotations := range map[string]map[string]string{"MutatingWebhookConfiguration": m.Annotations, "ValidatingWebhookConfiguration": v.Annotations} {
			if got := annotations["cert-manager.io/inject-ca-from"]; got != wantInject {
				t.Errorf("%s cert-manager.io/inject-ca-from = %q; want %q", kind, got, wantInject)
			}
		}
	})
}

func TestImages(t *testing.T) {
	t.Run("every container of every overlay runs the same image tag", func(t *testing.T) {
		images := map[string][]string{}
		for _, dir := range overlays {
			r := render(t, dir)
			for _, kind := range []string{"Deployment", "Job", "CronJob"} {
				for _, spec := range podSpecsOf(t, r, kind) {
					for _, c := range spec.Containers {
						images[c.Image] = append(images[c.Image], dir+" "+kind)
					}
				}
			}
		}
		if len(images) != 1 {
			t.Errorf("the overlays run different images %v; bump the tag in every kustomization's images:", images)
		}
	})
}
