package webhook

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
)

func TestKubewebhooksErrorsStillReachTheLogButNotItsPerRequestLine(t *testing.T) {
	logger, hook := logtest.NewNullLogger()
	m, err := NewMutator(Config{Config: config.NewStore(nil), Namespaces: namespaces.Static{}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(HandlerConfig{Webhook: m, Logger: logger.WithField("version", "test")})
	if err != nil {
		t.Fatal(err)
	}

	// A review that passes the guard but not kubewebhook's decoder.
	rec := post(h, []byte(`{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 5}}`))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body.String())
	}
	entry := hook.LastEntry()
	if entry == nil || entry.Level != logrus.ErrorLevel || !strings.Contains(entry.Message, "could not parse body") || entry.Data["version"] != "test" {
		t.Fatalf("want kubewebhook's error with our fields, got %+v", entry)
	}

	hook.Reset()
	if rec := post(h, reviewJSON(t, postgresPod, reviewOptions{namespace: "other"})); rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
	}
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.InfoLevel && strings.Contains(e.Message, "Admission review request handled") {
			t.Errorf("kubewebhook's per-request line is logged at %s: %+v", e.Level, e.Data)
		}
	}
}
