package review

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	kwhhttp "github.com/slok/kubewebhook/v2/pkg/http"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/internal/reviewtest"
)

// kubewebhookEnv is the probe webhooks twice: behind NewHandler, and behind
// kubewebhook's own handler alone, which decodes every review the way the single
// decode must answer like. The probes answer with everything they were given (see
// probe), so any difference in what the two decodes give a webhook shows.
type kubewebhookEnv struct {
	ours, theirs [2]http.Handler // mutate, validate
}

func newKubewebhookEnv(tb testing.TB) kubewebhookEnv {
	tb.Helper()
	var env kubewebhookEnv
	for i, wh := range []kwhwebhook.Webhook{probe{model.WebhookKindMutating}, probe{model.WebhookKindValidating}} {
		var err error
		if env.ours[i], err = NewHandler(HandlerConfig{Webhook: wh}); err != nil {
			tb.Fatal(err)
		}
		if env.theirs[i], err = kwhhttp.HandlerFor(kwhhttp.HandlerConfig{Webhook: wh}); err != nil {
			tb.Fatal(err)
		}
	}
	return env
}

// checkAnswersAsKubewebhook sends body to both handlers of each webhook and wants the
// same answer.
func checkAnswersAsKubewebhook(t *testing.T, env kubewebhookEnv, body []byte) {
	t.Helper()
	reviewtest.CheckSameAnswers(t, env.ours, env.theirs, body)
}

func TestKubewebhookEquivalence(t *testing.T) {
	t.Run("the single decode answers as the handler of kubewebhook", func(t *testing.T) {
		env := newKubewebhookEnv(t)
		for name, body := range reviewtest.EquivalenceCases(t) {
			t.Run(name, func(t *testing.T) {
				checkAnswersAsKubewebhook(t, env, body)
			})
		}
	})
}

func TestTheAPIServersReviewsAreReadInOnePass(t *testing.T) {
	if !singleDecode {
		t.Skip("built by Go < 1.27: no encoding/json/v2, every review takes kubewebhook's handler (the answers are the same: TestKubewebhookEquivalence)")
	}
	pod := strings.Replace(reviewtest.DeploymentPod, `"image": "postgres:17"`, `"image": "postgres:17", "command": ["sh", "-c", "init && exec postgres > /dev/null"]`, 1)
	for name, body := range map[string][]byte{
		"a Deployment's pod":               reviewtest.JSON(t, reviewtest.DeploymentPod, reviewtest.Options{}),
		"a pod with && and > in a command": reviewtest.JSON(t, pod, reviewtest.Options{}),
		"a Deployment":                     reviewtest.JSON(t, reviewtest.HostIPCDeployment, reviewtest.Options{Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}}),
		"a pod update":                     reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{Operation: admissionv1.Update}),
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
		"a top-level KIND":                        bytes.Replace(reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{}), []byte(`"request":`), []byte(`"KIND":"x","request":`), 1),
		"a top-level apiversion":                  bytes.Replace(reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{}), []byte(`"request":`), []byte(`"apiversion":"v1","request":`), 1),
		"a top-level Kind with a Kelvin sign":     bytes.Replace(reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{}), []byte(`"request":`), []byte(`"\u212aind":"x","request":`), 1),
		"a top-level Kind spelled with an escape": bytes.Replace(reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{}), []byte(`"request":`), []byte(`"\u004bind":"x","request":`), 1),
		"two objects":                             bytes.Replace(reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{}), []byte(`"object":`), []byte(`"object":{},"object":`), 1),
		"invalid UTF-8":                           bytes.Replace(reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{}), []byte(`"postgres"`), []byte("\"post\xffgres\""), 1),
	} {
		if _, ok := decodeReview(body); ok {
			t.Errorf("%s: the single decode takes a body it may read otherwise than kubewebhook", name)
		}
	}
}

// FuzzSingleDecodeAnswersAsKubewebhook: for any body the single decode takes, both
// webhooks answer exactly as behind kubewebhook's own handler.
func FuzzSingleDecodeAnswersAsKubewebhook(f *testing.F) {
	f.Add(reviewtest.JSON(f, reviewtest.DeploymentPod, reviewtest.Options{}))
	f.Add(reviewtest.JSON(f, reviewtest.UnplaceablePod, reviewtest.Options{}))
	f.Add(reviewtest.JSON(f, reviewtest.HostIPCDeployment, reviewtest.Options{Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Operation: admissionv1.Update}))
	f.Add([]byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"u","operation":"CREATE","object":{"kind":"Pod","apiVersion":"v1"}}}`))
	beyond := reviewtest.PodWithSysctls(f, reviewtest.AcceptLocal(2*scheduling.MaxSysctls))
	f.Add(reviewtest.JSON(f, beyond, reviewtest.Options{}))
	f.Add(reviewtest.JSON(f, strings.Replace(beyond, `"value":"1"}]`, `"value":"1"},{"n\u0061me":"x","other":5},null]`, 1), reviewtest.Options{}))
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
	if !singleDecode {
		t.Skip("this build has no single decode")
	}
	names := reviewtest.AcceptLocal(2*scheduling.MaxSysctls + 5)
	pod := reviewtest.PodWithSysctls(t, names)
	rev, ok := decodeReview(reviewtest.JSON(t, pod, reviewtest.Options{}))
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
		body := reviewtest.JSON(t, strings.Replace(pod, last, entry, 1), reviewtest.Options{})
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
