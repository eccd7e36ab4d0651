package review

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sysctl-placement/sysctl-placement/webhook/internal/reviewtest"
)

func TestTheGuardReadsTheEnvelopeAsKubewebhookWill(t *testing.T) {
	handlers := probeHandlers(t)
	const head = `"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"`
	request := `{"uid": "u", "kind": {"version": "v1", "kind": "Pod"}, "namespace": "team", "operation": "CREATE", "object": ` + reviewtest.PostgresPod + `}`
	cases := map[string]struct {
		body   string
		status int
	}{
		"the API server's order: kind, apiVersion, request":     {string(reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{})), http.StatusOK},
		"request before kind and apiVersion":                    {`{"request": ` + request + `, ` + head + `}`, http.StatusOK},
		"another key between the envelope and request":          {`{` + head + `, "response": null, "request": ` + request + `}`, http.StatusOK},
		"an escaped character in the object":                    {`{` + head + `, "request": ` + strings.Replace(request, `"team"`, `"t\u0065am"`, 1) + `}`, http.StatusOK},
		"request: null":                                         {`{` + head + `, "request": null}`, http.StatusBadRequest},
		"request is not an object":                              {`{` + head + `, "request": 1}`, http.StatusBadRequest},
		"Request in another case (kubewebhook matches exactly)": {`{` + head + `, "Request": ` + request + `}`, http.StatusBadRequest},
		"a second request that is null (the last one wins)":     {`{` + head + `, "request": ` + request + `, "request": null}`, http.StatusBadRequest},
		"a second request spelled with an escape":               {`{` + head + `, "request": ` + request + `, "r\u0065quest": null}`, http.StatusBadRequest},
		"the envelope only inside a nested kind":                {`{"kind": {` + head + `, "request": {}}}`, http.StatusBadRequest},
		"kind is not a string":                                  {`{"kind": 1, "apiVersion": "admission.k8s.io/v1", "request": {}}`, http.StatusBadRequest},
		"trailing data after the review":                        {`{"request": ` + request + `, ` + head + `} x`, http.StatusBadRequest},
		"a JSON array":                                          {`[]`, http.StatusBadRequest},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for _, h := range handlers {
				rec := reviewtest.Post(h, []byte(tc.body))
				if rec.Code != tc.status {
					t.Errorf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
				}
			}
		})
	}
}

func TestGuardShortPath(t *testing.T) {
	t.Run("the reviews the API server sends take the short path of the guard", func(t *testing.T) {
		// encoding/json escapes & as \u0026: a command with && must not slow the guard.
		pod := strings.Replace(reviewtest.DeploymentPod, `"image": "postgres:17"`, `"image": "postgres:17", "command": ["sh", "-c", "init && exec postgres"]`, 1)
		for name, body := range map[string][]byte{
			"a Deployment's pod":      reviewtest.JSON(t, reviewtest.DeploymentPod, reviewtest.Options{}),
			"a pod with a && command": reviewtest.JSON(t, pod, reviewtest.Options{}),
		} {
			if strings.Contains(name, "&&") && !strings.Contains(string(body), `\u0026\u0026`) {
				t.Fatalf("%s: want the && escaped as the API server escapes it: %s", name, body)
			}
			if env, ok := scanEnvelopePrefix(body); !ok || !env.Request || env.Kind != "AdmissionReview" || env.APIVersion != "admission.k8s.io/v1" {
				t.Errorf("%s: short path %v %+v, want it taken: %.200s", name, ok, env, body)
			}
		}
	})
}

// BenchmarkGuardEnvelopeFallback measures the guard on a body whose keys are not in
// the API server's order: every top-level value is read.
func BenchmarkGuardEnvelopeFallback(b *testing.B) {
	review := string(reviewtest.JSON(b, reviewtest.DeploymentPod, reviewtest.Options{}))
	const prefix = `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":`
	if !strings.HasPrefix(review, prefix) {
		b.Fatalf("the review does not start as the API server writes it: %.80s", review)
	}
	request := strings.TrimSuffix(strings.TrimPrefix(review, prefix), "}")
	body := []byte(`{"request": ` + request + `, "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if env, err := readEnvelope(body); err != nil || !env.Request {
			b.Fatalf("envelope: %v %+v", err, env)
		}
	}
}

// BenchmarkGuardEnvelope measures what the guard (http.go) adds before kubewebhook
// decodes the same body again: reading it and decoding the envelope.
func BenchmarkGuardEnvelope(b *testing.B) {
	body := reviewtest.JSON(b, reviewtest.DeploymentPod, reviewtest.Options{})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if env, err := readEnvelope(body); err != nil || !env.Request {
			b.Fatalf("envelope: %v", err)
		}
	}
}
