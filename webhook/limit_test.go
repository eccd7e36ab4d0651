package webhook

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// heldWebhook is a webhook whose reviews wait until the test lets them go, to hold
// admission slots.
type heldWebhook struct {
	kwhwebhook.Webhook
	entered chan struct{}
	release chan struct{}
}

func (h heldWebhook) Review(ctx context.Context, ar model.AdmissionReview) (model.AdmissionResponse, error) {
	h.entered <- struct{}{}
	<-h.release
	return h.Webhook.Review(ctx, ar)
}

// limitedHandler is a handler whose reviews are held, under a limit of max at once.
func limitedHandler(t *testing.T, max int, wait time.Duration) (http.Handler, heldWebhook, *Metrics) {
	t.Helper()
	m, err := NewMutator(Config{Config: config.NewStore(nil), Namespaces: namespaces.Static{}})
	if err != nil {
		t.Fatal(err)
	}
	held := heldWebhook{Webhook: m, entered: make(chan struct{}, 64), release: make(chan struct{})}
	metrics := NewMetrics(prometheus.NewRegistry())
	limit, err := NewAdmissionLimit(max, wait, metrics)
	if err != nil {
		t.Fatal(err)
	}
	h, err := review.NewHandler(review.HandlerConfig{Webhook: held, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return h, held, metrics
}

// serveAsync posts a review to h in the background; the recorder arrives on the
// channel once the handler has answered.
func serveAsync(t *testing.T, h http.Handler, target string) <-chan *httptest.ResponseRecorder {
	t.Helper()
	body := reviewJSON(t, postgresPod, reviewOptions{Namespace: "other"})
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		done <- rec
	}()
	return done
}

// answerWhileHeld is the answer on done, which must come while the held reviews
// still hold their slots; the 10 s bound only keeps a failure from hanging.
func answerWhileHeld(t *testing.T, held heldWebhook, done <-chan *httptest.ResponseRecorder) *httptest.ResponseRecorder {
	t.Helper()
	select {
	case rec := <-done:
		return rec
	case <-time.After(10 * time.Second):
		close(held.release)
		t.Fatalf("a review beyond the limit was not answered while the limit's reviews were in progress: it ran or waited for them")
		return nil
	}
}

func TestAdmissionLimit(t *testing.T) {
	const max = 2
	// fill starts max reviews and waits until each holds its slot.
	fill := func(t *testing.T, h http.Handler, held heldWebhook) []<-chan *httptest.ResponseRecorder {
		var running []<-chan *httptest.ResponseRecorder
		for range max {
			running = append(running, serveAsync(t, h, "/mutate"))
			<-held.entered
		}
		return running
	}
	finish := func(t *testing.T, held heldWebhook, running []<-chan *httptest.ResponseRecorder) {
		close(held.release)
		for _, done := range running {
			if rec := <-done; rec.Code != http.StatusOK {
				t.Errorf("a held review answered %d: %s", rec.Code, rec.Body.String())
			}
		}
	}

	t.Run("the review beyond the limit is answered 429 with Retry-After while the others still run", func(t *testing.T) {
		h, held, metrics := limitedHandler(t, max, 50*time.Millisecond)
		running := fill(t, h, held)
		// The held reviews cannot finish before release is closed, so an answer
		// here came while every slot was taken: promptly, not after them.
		rec := answerWhileHeld(t, held, serveAsync(t, h, "/mutate"))
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "retry") {
			t.Errorf("the review beyond the limit = %d Retry-After %q %q, want 429, Retry-After 1 and a message saying to retry",
				rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
		}
		if got := testutil.ToFloat64(metrics.admissionsThrottled); got != 1 {
			t.Errorf("sysctl_placement_admissions_throttled_total = %v, want 1", got)
		}
		if got := testutil.ToFloat64(metrics.admissionsInFlight); got != max {
			t.Errorf("sysctl_placement_admissions_in_flight = %v, want %d", got, max)
		}
		finish(t, held, running)
		if got := testutil.ToFloat64(metrics.admissionsInFlight); got != 0 {
			t.Errorf("sysctl_placement_admissions_in_flight = %v after every review, want 0", got)
		}
	})

	t.Run("a review that waits no longer than half the API server's timeout parameter is answered 429", func(t *testing.T) {
		h, held, _ := limitedHandler(t, max, time.Hour)
		running := fill(t, h, held)
		if rec := answerWhileHeld(t, held, serveAsync(t, h, "/mutate?timeout=100ms")); rec.Code != http.StatusTooManyRequests {
			t.Errorf("the review beyond the limit with ?timeout=100ms = %d %q, want 429 (not an hour's wait)", rec.Code, rec.Body.String())
		}
		finish(t, held, running)
	})

	t.Run("a review beyond the limit waits for a free slot and is answered", func(t *testing.T) {
		h, held, metrics := limitedHandler(t, max, time.Hour)
		running := fill(t, h, held)
		queued := serveAsync(t, h, "/mutate")
		err := wait.PollUntilContextTimeout(t.Context(), time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return testutil.ToFloat64(metrics.admissionsQueued) == 1, nil
		})
		if err != nil {
			t.Fatalf("the review beyond the limit was not queued: %v", err)
		}
		finish(t, held, append(running, queued))
	})
}

func TestNewAdmissionLimitRefusesALimitBelowOne(t *testing.T) {
	if _, err := NewAdmissionLimit(0, time.Second, nil); err == nil {
		t.Error("NewAdmissionLimit(0) succeeded, want an error")
	}
}
