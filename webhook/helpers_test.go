package webhook

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/internal/reviewtest"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// testEnv is the example config (deploy/examples/placement-config.yaml: pools ipc,
// net, general) and two namespaces: "team" opted in, "other" not.
type testEnv struct {
	mutate   http.Handler
	validate http.Handler
}

func newTestEnv(t testing.TB, nsAnnotations map[string]string) testEnv {
	t.Helper()
	compiled, err := config.Compile(deploy.ExampleConfig)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	ann := map[string]string{scheduling.AnnotationEnabled: "true"}
	for k, v := range nsAnnotations {
		ann[k] = v
	}
	return newTestEnvWithConfig(t, compiled, ann)
}

// newTestEnvWithConfig serves compiled with namespace "team" annotated ann.
func newTestEnvWithConfig(t testing.TB, compiled *scheduling.Compiled, ann map[string]string) testEnv {
	t.Helper()
	return newTestEnvFrom(t, Config{
		Config: config.NewStore(compiled),
		Namespaces: namespaces.Static{
			"team":  {Name: "team", Annotations: ann},
			"other": {Name: "other"},
		},
	}, nil)
}

// newTestEnvFrom serves both webhooks built from cfg; a non-nil recorder measures the
// mutating one, as serve does.
func newTestEnvFrom(t testing.TB, cfg Config, recorder kwhwebhook.MetricsRecorder) testEnv {
	t.Helper()
	m, v := newWebhooks(t, cfg)
	mh, err := review.NewHandler(review.HandlerConfig{Webhook: m, Recorder: recorder})
	if err != nil {
		t.Fatal(err)
	}
	vh, err := review.NewHandler(review.HandlerConfig{Webhook: v})
	if err != nil {
		t.Fatal(err)
	}
	return testEnv{mutate: mh, validate: vh}
}

// newWebhooks builds both webhooks on cfg.
func newWebhooks(tb testing.TB, cfg Config) (*Mutator, *Validator) {
	tb.Helper()
	m, err := NewMutator(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := NewValidator(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m, v
}

// The fixtures and the review builder are reviewtest's, shared with the review
// package's tests.
const (
	postgresPod       = reviewtest.PostgresPod
	unplaceablePod    = reviewtest.UnplaceablePod
	hostIPCDeployment = reviewtest.HostIPCDeployment
	deploymentPod     = reviewtest.DeploymentPod
	replicaSetPod     = reviewtest.ReplicaSetPod
)

type reviewOptions = reviewtest.Options

var (
	podKind        = reviewtest.PodKind
	reviewJSON     = reviewtest.JSON
	post           = reviewtest.Post
	podWithSysctls = reviewtest.PodWithSysctls
	acceptLocal    = reviewtest.AcceptLocal
)

// response decodes an AdmissionReview response, failing on anything but 200.
func response(t testing.TB, rec *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", rec.Code, rec.Body.String())
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v: %s", err, rec.Body.String())
	}
	if ar.Response == nil {
		t.Fatalf("AdmissionReview has no response: %s", rec.Body.String())
	}
	return ar.Response
}

// patchOps decodes a response's JSON patch.
func patchOps(t testing.TB, resp *admissionv1.AdmissionResponse) []operation {
	t.Helper()
	if len(resp.Patch) == 0 {
		return nil
	}
	var ops []operation
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatalf("patch is not a JSON patch: %v: %s", err, resp.Patch)
	}
	return ops
}

// applyPatch applies resp's patch to object as the API server does.
func applyPatch(t testing.TB, object string, resp *admissionv1.AdmissionResponse) map[string]any {
	t.Helper()
	out := []byte(object)
	if len(resp.Patch) > 0 {
		p, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("patch does not decode: %v", err)
		}
		out, err = p.Apply(out)
		if err != nil {
			t.Fatalf("patch does not apply: %v: %s", err, resp.Patch)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// dig walks a decoded JSON document by keys and indexes.
func dig(doc any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := doc.(map[string]any)
			if !ok {
				return nil
			}
			doc = m[k]
		case int:
			s, ok := doc.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			doc = s[k]
		}
	}
	return doc
}
