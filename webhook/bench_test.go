package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// benchReview is the AdmissionReview for object, checked once through h so that a
// benchmark never measures an error path.
func benchReview(b *testing.B, h http.Handler, object string) []byte {
	b.Helper()
	body := reviewJSON(b, object, reviewOptions{})
	resp := response(b, post(h, body))
	if !resp.Allowed {
		b.Fatalf("benchmark review is not allowed: %+v", resp.Result)
	}
	return body
}

// serveBench runs body through h b.N times the way net/http does: a request whose
// body is read once, a fresh response writer each time.
func serveBench(b *testing.B, h http.Handler, body []byte) {
	b.Helper()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
}

// BenchmarkMutateHandler measures one mutating admission in process: the guard,
// kubewebhook's decoding, scheduling.Plan, the JSON patch and the encoded response,
// for a Deployment's pod against the example config. The HTTP/TLS stack is not
// included; the load generator in integration/perf measures that.
func BenchmarkMutateHandler(b *testing.B) {
	env := newTestEnv(b, nil)
	body := benchReview(b, env.mutate, deploymentPod)
	if ops := patchOps(b, response(b, post(env.mutate, body))); len(ops) == 0 {
		b.Fatal("the benchmark pod is not placed: the mutating webhook returned no patch")
	}
	serveBench(b, env.mutate, body)
}

// BenchmarkValidateHandler measures one validating admission of the same pod after
// the mutating webhook's patch, as the API server sends it.
func BenchmarkValidateHandler(b *testing.B) {
	env := newTestEnv(b, nil)
	placed := string(mutated(b, env.mutate))
	body := benchReview(b, env.validate, placed)
	serveBench(b, env.validate, body)
}

// mutated returns the benchmark pod with the mutating webhook's patch applied.
func mutated(b *testing.B, mutate http.Handler) []byte {
	b.Helper()
	resp := response(b, post(mutate, reviewJSON(b, deploymentPod, reviewOptions{})))
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		b.Fatalf("patch does not decode: %v", err)
	}
	out, err := patch.Apply([]byte(deploymentPod))
	if err != nil {
		b.Fatalf("patch does not apply: %v", err)
	}
	if !strings.Contains(string(out), "nodeSelector") {
		b.Fatalf("the mutated pod has no nodeSelector: %s", out)
	}
	return out
}
