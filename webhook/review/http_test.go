package review

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"github.com/slok/kubewebhook/v2/pkg/model"

	"github.com/sysctl-placement/sysctl-placement/webhook/internal/reviewtest"
)

func TestKubewebhookErrors(t *testing.T) {
	t.Run("errors of kubewebhook still reach the log but not its per-request line", func(t *testing.T) {
		logger, hook := logtest.NewNullLogger()
		h, err := NewHandler(HandlerConfig{Webhook: probe{model.WebhookKindMutating}, Logger: logger.WithField("version", "test")})
		if err != nil {
			t.Fatal(err)
		}

		// A review that passes the guard but not kubewebhook's decoder.
		rec := reviewtest.Post(h, []byte(`{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 5}}`))
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body.String())
		}
		entry := hook.LastEntry()
		if entry == nil || entry.Level != logrus.ErrorLevel || !strings.Contains(entry.Message, "could not parse body") || entry.Data["version"] != "test" {
			t.Fatalf("want kubewebhook's error with our fields, got %+v", entry)
		}

		hook.Reset()
		if rec := reviewtest.Post(h, reviewtest.JSON(t, reviewtest.PostgresPod, reviewtest.Options{Namespace: "other"})); rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
		for _, e := range hook.AllEntries() {
			if e.Level <= logrus.InfoLevel && strings.Contains(e.Message, "Admission review request handled") {
				t.Errorf("kubewebhook's per-request line is logged at %s: %+v", e.Level, e.Data)
			}
		}
	})
}

func TestReadBodyHoldsWhatArrivedNotWhatWasClaimed(t *testing.T) {
	// readBodyAllocs reads body from a request that claims contentLength and returns
	// what was read and the bytes allocated meanwhile.
	readBodyAllocs := func(t *testing.T, body []byte, contentLength int64) ([]byte, uint64) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.ContentLength = contentLength
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := readBody(httptest.NewRecorder(), req)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("read %d bytes, want the %d sent", len(got), len(body))
		}
		return got, after.TotalAlloc - before.TotalAlloc
	}

	t.Run("a request claiming 6 MB that sends 1 KiB costs KiB, not MB", func(t *testing.T) {
		_, allocated := readBodyAllocs(t, bytes.Repeat([]byte("x"), 1<<10), 6_000_000)
		if allocated > 64<<10 {
			t.Errorf("reading 1 KiB of a claimed 6 MB allocated %d bytes, want at most 64 KiB", allocated)
		}
	})
	t.Run("an honest 3 MiB body ends in a buffer of its own size", func(t *testing.T) {
		got, allocated := readBodyAllocs(t, bytes.Repeat([]byte("x"), 3<<20), 3<<20)
		if extra := cap(got) - len(got); extra > 1 {
			t.Errorf("the buffer of a 3 MiB body has %d bytes to spare, want at most 1", extra)
		}
		// Doubling up to the claim: the buffers outgrown add up to less than twice
		// the body.
		if allocated > 3*(3<<20) {
			t.Errorf("reading a 3 MiB body allocated %d bytes, want at most three times the body", allocated)
		}
	})
}
