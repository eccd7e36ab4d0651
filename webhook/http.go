package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	kwhhttp "github.com/slok/kubewebhook/v2/pkg/http"
	kwhlog "github.com/slok/kubewebhook/v2/pkg/log"
	kwhprometheus "github.com/slok/kubewebhook/v2/pkg/metrics/prometheus"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
)

// MaxRequestBodyBytes is the largest AdmissionReview accepted: kubewebhook's own limit
// (twice the API server's 3 MiB request limit).
const MaxRequestBodyBytes = kwhhttp.MaxRequestBodyBytes

// NewRecorder registers kubewebhook's per-review metrics (latency and count by
// webhook and outcome) on reg, for HandlerConfig.Recorder; one recorder serves both
// handlers.
func NewRecorder(reg prometheus.Registerer) (kwhwebhook.MetricsRecorder, error) {
	r, err := kwhprometheus.NewRecorder(kwhprometheus.RecorderConfig{Registry: reg})
	if err != nil {
		return nil, fmt.Errorf("could not register webhook metrics: %w", err)
	}
	return r, nil
}

// HandlerConfig configures an admission HTTP handler.
type HandlerConfig struct {
	// Webhook is the mutating or validating webhook (required).
	Webhook kwhwebhook.Webhook
	// Recorder measures each review (kubewebhook's measured webhook); nil measures nothing.
	Recorder kwhwebhook.MetricsRecorder
	// Logger receives kubewebhook's own error lines; nil logs nothing.
	Logger *logrus.Entry
}

// NewHandler returns the HTTP handler for one webhook: a guard that answers malformed
// requests with a 4xx and a message that says what to send, then kubewebhook.
func NewHandler(cfg HandlerConfig) (http.Handler, error) {
	if cfg.Webhook == nil {
		return nil, errors.New("a webhook is required")
	}
	wh := cfg.Webhook
	if cfg.Recorder != nil {
		wh = kwhwebhook.NewMeasuredWebhook(cfg.Recorder, wh)
	}
	var logger kwhlog.Logger = kwhlog.Noop
	if cfg.Logger != nil {
		logger = kwhLogger{cfg.Logger}
	}
	h, err := kwhhttp.HandlerFor(kwhhttp.HandlerConfig{Webhook: wh, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("could not build the admission handler: %w", err)
	}
	return guard{next: h, logger: cfg.Logger}, nil
}

// kwhLogger is the logger kubewebhook gets: its errors and warnings, without its
// per-request fields. For every request kubewebhook copies eleven fields into the
// context and a logger, only for an info line that we drop: our webhooks log one line
// per admission themselves, with the decision, the uid and the namespace.
type kwhLogger struct{ entry *logrus.Entry }

func (l kwhLogger) Infof(format string, args ...any)    { l.entry.Debugf(format, args...) }
func (l kwhLogger) Debugf(format string, args ...any)   { l.entry.Debugf(format, args...) }
func (l kwhLogger) Warningf(format string, args ...any) { l.entry.Warnf(format, args...) }
func (l kwhLogger) Errorf(format string, args ...any)   { l.entry.Errorf(format, args...) }

func (l kwhLogger) WithValues(kwhlog.Kv) kwhlog.Logger                              { return l }
func (l kwhLogger) WithCtxValues(context.Context) kwhlog.Logger                     { return l }
func (l kwhLogger) SetValuesOnCtx(ctx context.Context, _ kwhlog.Kv) context.Context { return ctx }

// guard checks what kubewebhook assumes: a POSTed JSON AdmissionReview with a request.
// kubewebhook answers an over-long body with 400 and dereferences a missing request;
// the API server never sends either, but a misconfigured client must get a clear 4xx.
type guard struct {
	next   http.Handler
	logger *logrus.Entry
}

func (g guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if g.logger != nil {
				g.logger.WithField("panic", v).Error("admission handler panicked; answering 500")
			}
			http.Error(w, "internal error while reviewing the request", http.StatusInternalServerError)
		}
	}()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "send the AdmissionReview with POST", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("content type %q is not supported: send the AdmissionReview as application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("the AdmissionReview is larger than %d bytes", MaxRequestBodyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "could not read the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) == 0 {
		http.Error(w, "the request body is empty: send an AdmissionReview (admission.k8s.io/v1) as JSON", http.StatusBadRequest)
		return
	}
	env, err := readEnvelope(body)
	if err != nil {
		http.Error(w, "the request body is not a JSON AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	if env.Kind != "AdmissionReview" || (env.APIVersion != "admission.k8s.io/v1" && env.APIVersion != "admission.k8s.io/v1beta1") {
		http.Error(w, fmt.Sprintf("expected kind AdmissionReview with apiVersion admission.k8s.io/v1, got kind %q apiVersion %q", env.Kind, env.APIVersion), http.StatusBadRequest)
		return
	}
	if !env.Request {
		http.Error(w, "the AdmissionReview has no request: set .request with uid, kind and object", http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	g.next.ServeHTTP(w, r)
}
