package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	kwhhttp "github.com/slok/kubewebhook/v2/pkg/http"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kubewebhookEnv is the example config's webhooks twice: behind NewHandler, and behind
// kubewebhook's own handler alone, which decodes every review the way the single
// decode must answer like.
type kubewebhookEnv struct {
	ours, theirs [2]http.Handler // mutate, validate
}

func newKubewebhookEnv(t testing.TB) kubewebhookEnv {
	t.Helper()
	m, v := observedWebhooks(t, &recordingObserver{})
	var env kubewebhookEnv
	for i, wh := range []kwhwebhook.Webhook{m, v} {
		var err error
		if env.ours[i], err = NewHandler(HandlerConfig{Webhook: wh}); err != nil {
			t.Fatal(err)
		}
		if env.theirs[i], err = kwhhttp.HandlerFor(kwhhttp.HandlerConfig{Webhook: wh}); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// checkAnswersAsKubewebhook sends body to both handlers of each webhook and wants the
// same status, content type and AdmissionReview (the same bytes, but for how JSON
// escapes strings: encoding/json writes < as \u003c, the response writer as <).
func checkAnswersAsKubewebhook(t *testing.T, env kubewebhookEnv, body []byte) {
	t.Helper()
	for i, name := range []string{"mutating", "validating"} {
		ours, theirs := post(env.ours[i], body), post(env.theirs[i], body)
		same := ours.Code == theirs.Code && ours.Header().Get("Content-Type") == theirs.Header().Get("Content-Type")
		if same && !bytes.Equal(ours.Body.Bytes(), theirs.Body.Bytes()) {
			var o, th admissionv1.AdmissionReview
			same = json.Unmarshal(ours.Body.Bytes(), &o) == nil && json.Unmarshal(theirs.Body.Bytes(), &th) == nil && reflect.DeepEqual(o, th)
		}
		if !same {
			t.Fatalf("%s webhook: the single decode answers\n%d %s\nkubewebhook's handler answers\n%d %s",
				name, ours.Code, ours.Body.String(), theirs.Code, theirs.Body.String())
		}
	}
}

func TestTheSingleDecodeAnswersAsKubewebhooksHandler(t *testing.T) {
	env := newKubewebhookEnv(t)
	deployment := metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	withUID := strings.Replace(hostIPCDeployment, `"name": "shm-cache"`, `"name": "shm-cache", "uid": "6f1c0d3e-0000-4000-8000-000000000002"`, 1)
	cases := map[string][]byte{
		"a Deployment's pod":                  reviewJSON(t, deploymentPod, reviewOptions{}),
		"a dry run":                           reviewJSON(t, deploymentPod, reviewOptions{dryRun: true}),
		"an unplaceable pod (denied)":         reviewJSON(t, unplaceablePod, reviewOptions{}),
		"a controller's unplaceable pod":      reviewJSON(t, replicaSetPod, reviewOptions{}),
		"a namespace that has not opted in":   reviewJSON(t, postgresPod, reviewOptions{namespace: "other"}),
		"a pod update":                        reviewJSON(t, postgresPod, reviewOptions{operation: admissionv1.Update}),
		"a delete":                            reviewJSON(t, postgresPod, reviewOptions{operation: admissionv1.Delete}),
		"a Deployment created with hostIPC":   reviewJSON(t, hostIPCDeployment, reviewOptions{kind: deployment}),
		"a Deployment updated with hostIPC":   reviewJSON(t, withUID, reviewOptions{kind: deployment, operation: admissionv1.Update}),
		"a ConfigMap":                         reviewJSON(t, `{"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}}`, reviewOptions{kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}}),
		"a pod whose sysctls are not a list":  reviewJSON(t, `{"apiVersion": "v1", "kind": "Pod", "spec": {"securityContext": {"sysctls": "x"}}}`, reviewOptions{}),
		"a pod whose apiVersion is malformed": reviewJSON(t, `{"apiVersion": "a/b/c", "kind": "Pod"}`, reviewOptions{}),
		"a request with no object":            []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"team"}}`),
		"a v1beta1 review":                    bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1),
		"a v1beta1 review that is denied":     bytes.Replace(reviewJSON(t, unplaceablePod, reviewOptions{}), []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v1beta1"`), 1),
		"a second Kind key (kubewebhook reads it case-insensitively)": bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}),
			[]byte(`"request":`), []byte(`"Kind":"Other","request":`), 1),
		"a second object key":           bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`"object":`), []byte(`"object":{"metadata":{"labels":{"x":"y"}}},"object":`), 1),
		"a Kind with a Kelvin sign":     bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`"request":`), []byte(`"\u212aind":"Other","request":`), 1),
		"invalid UTF-8 in a label":      bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`"postgres"`), []byte("\"post\xffgres\""), 1),
		"a sysctl name with <, > and &": reviewJSON(t, strings.Replace(unplaceablePod, "kernel.msgmax", "kernel.<msg>&max", 1), reviewOptions{}),
		"a repeated uid":                bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`"operation":`), []byte(`"uid":"second","operation":`), 1),
		"a key spelled with an escape":  bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`"namespace":"team"`), []byte(`"n\u0061mespace":"team"`), 1),
		"a response that is malformed":  bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`"request":`), []byte(`"response":{"allowed":"yes"},"request":`), 1),
		"a userInfo that is malformed":  bytes.Replace(reviewJSON(t, deploymentPod, reviewOptions{}), []byte(`"operation":`), []byte(`"userInfo":{"groups":"g"},"operation":`), 1),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			checkAnswersAsKubewebhook(t, env, body)
		})
	}
}

func TestTheAPIServersReviewsAreReadInOnePass(t *testing.T) {
	pod := strings.Replace(deploymentPod, `"image": "postgres:17"`, `"image": "postgres:17", "command": ["sh", "-c", "init && exec postgres > /dev/null"]`, 1)
	for name, body := range map[string][]byte{
		"a Deployment's pod":               reviewJSON(t, deploymentPod, reviewOptions{}),
		"a pod with && and > in a command": reviewJSON(t, pod, reviewOptions{}),
		"a Deployment":                     reviewJSON(t, hostIPCDeployment, reviewOptions{kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}}),
		"a pod update":                     reviewJSON(t, postgresPod, reviewOptions{operation: admissionv1.Update}),
	} {
		rev, ok := decodeReview(body)
		if !ok {
			t.Errorf("%s: the single decode does not take it: %.300s", name, body)
			continue
		}
		if rev.Request.Object == nil || rev.Request.Object.Metadata == nil {
			t.Errorf("%s: the object was not decoded into the narrow types", name)
		}
	}
	for name, body := range map[string][]byte{
		"a top-level KIND":                        bytes.Replace(reviewJSON(t, postgresPod, reviewOptions{}), []byte(`"request":`), []byte(`"KIND":"x","request":`), 1),
		"a top-level apiversion":                  bytes.Replace(reviewJSON(t, postgresPod, reviewOptions{}), []byte(`"request":`), []byte(`"apiversion":"v1","request":`), 1),
		"a top-level Kind with a Kelvin sign":     bytes.Replace(reviewJSON(t, postgresPod, reviewOptions{}), []byte(`"request":`), []byte(`"\u212aind":"x","request":`), 1),
		"a top-level Kind spelled with an escape": bytes.Replace(reviewJSON(t, postgresPod, reviewOptions{}), []byte(`"request":`), []byte(`"\u004bind":"x","request":`), 1),
		"two objects":                             bytes.Replace(reviewJSON(t, postgresPod, reviewOptions{}), []byte(`"object":`), []byte(`"object":{},"object":`), 1),
		"invalid UTF-8":                           bytes.Replace(reviewJSON(t, postgresPod, reviewOptions{}), []byte(`"postgres"`), []byte("\"post\xffgres\""), 1),
	} {
		if _, ok := decodeReview(body); ok {
			t.Errorf("%s: the single decode takes a body it may read otherwise than kubewebhook", name)
		}
	}
}

// FuzzSingleDecodeAnswersAsKubewebhook: for any body the single decode takes, both
// webhooks answer exactly as behind kubewebhook's own handler.
func FuzzSingleDecodeAnswersAsKubewebhook(f *testing.F) {
	f.Add(reviewJSON(f, deploymentPod, reviewOptions{}))
	f.Add(reviewJSON(f, unplaceablePod, reviewOptions{}))
	f.Add(reviewJSON(f, hostIPCDeployment, reviewOptions{kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, operation: admissionv1.Update}))
	f.Add([]byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u","operation":"CREATE","object":{"kind":"Pod","apiVersion":"v1"}}}`))
	beyond := podWithSysctls(f, acceptLocal(2*scheduling.MaxSysctls))
	f.Add(reviewJSON(f, beyond, reviewOptions{}))
	f.Add(reviewJSON(f, strings.Replace(beyond, `"value":"1"}]`, `"value":"1"},{"n\u0061me":"x","other":5},null]`, 1), reviewOptions{}))
	env := newKubewebhookEnv(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, ok := decodeReview(body); !ok {
			return
		}
		checkAnswersAsKubewebhook(t, env, body)
	})
}

// TestSysctlsBeyondTheLimitAreCountedNotKept: the single decode keeps the first
// MaxSysctls+1 sysctls, counts the rest as empty entries (so Plan states the same
// count), and refuses the body where decoding a later entry into a corev1.Sysctl
// would fail, leaving it to the slow path.
func TestSysctlsBeyondTheLimitAreCountedNotKept(t *testing.T) {
	names := acceptLocal(2*scheduling.MaxSysctls + 5)
	pod := podWithSysctls(t, names)
	rev, ok := decodeReview(reviewJSON(t, pod, reviewOptions{}))
	if !ok {
		t.Fatal("the single decode does not take a pod beyond the sysctl limit")
	}
	list := rev.Request.Object.Spec.SecurityContext.Sysctls
	if len(list) != len(names) {
		t.Fatalf("decoded %d sysctls, want all %d counted", len(list), len(names))
	}
	for i, s := range list {
		kept := i <= scheduling.MaxSysctls
		if want := (corev1.Sysctl{Name: names[i], Value: "1"}); kept && s != want || !kept && s != (corev1.Sysctl{}) {
			t.Fatalf("sysctl %d decoded as %+v; want the first %d kept and the rest empty", i, s, scheduling.MaxSysctls+1)
		}
	}

	// Each entry replaces the last one of the list, beyond the limit.
	last := `{"name":"` + names[len(names)-1] + `","value":"1"}`
	for entry, decodes := range map[string]bool{
		`null`:                                  true,
		`{}`:                                    true,
		`{"name":null,"value":null}`:            true,
		`{"n\u0061me":"a","other":[1,{"x":2}]}`: true,
		`"net.ipv4.ip_forward"`:                 false,
		`[]`:                                    false,
		`{"name":5}`:                            false,
		`{"value":true}`:                        false,
		`{"n\u0061me":{}}`:                      false,
		`{"name":"a","name":"b"}`:               false,
		"{\"name\":\"\xff\"}":                   false,
	} {
		body := reviewJSON(t, strings.Replace(pod, last, entry, 1), reviewOptions{})
		rev, ok := decodeReview(body)
		if ok != decodes {
			t.Errorf("entry %s beyond the limit: the single decode takes it = %v, want %v", entry, ok, decodes)
			continue
		}
		if ok && len(rev.Request.Object.Spec.SecurityContext.Sysctls) != len(names) {
			t.Errorf("entry %s beyond the limit: decoded %d sysctls, want %d", entry, len(rev.Request.Object.Spec.SecurityContext.Sysctls), len(names))
		}
	}
}
