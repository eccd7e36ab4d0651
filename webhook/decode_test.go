package webhook

import (
	"net/http"
	"testing"

	kwhhttp "github.com/slok/kubewebhook/v2/pkg/http"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"

	"github.com/sysctl-placement/sysctl-placement/webhook/internal/reviewtest"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// The review package proves its single decode gives a webhook what kubewebhook's
// own handler gives it, with a probe webhook that echoes everything. This is the
// same proof with the real webhooks, whose answers (patches, warnings, denials)
// are what the API server reads.
func TestSingleDecode(t *testing.T) {
	m, v := observedWebhooks(t, &recordingObserver{})
	var ours, theirs [2]http.Handler
	for i, wh := range []kwhwebhook.Webhook{m, v} {
		var err error
		if ours[i], err = review.NewHandler(review.HandlerConfig{Webhook: wh}); err != nil {
			t.Fatal(err)
		}
		if theirs[i], err = kwhhttp.HandlerFor(kwhhttp.HandlerConfig{Webhook: wh}); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range reviewtest.EquivalenceCases(t) {
		t.Run("our webhooks answer "+name+" as behind kubewebhook's handler", func(t *testing.T) {
			reviewtest.CheckSameAnswers(t, ours, theirs, body)
		})
	}
}
