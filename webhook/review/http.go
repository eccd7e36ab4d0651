package review

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	kwhhttp "github.com/slok/kubewebhook/v2/pkg/http"
	kwhlog "github.com/slok/kubewebhook/v2/pkg/log"
	kwhprometheus "github.com/slok/kubewebhook/v2/pkg/metrics/prometheus"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sysctl-placement/sysctl-placement/webhook/internal/jsonbytes"
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
	// Limit bounds the reviews in progress; share one between the handlers of a
	// process. nil: no limit.
	Limit Limiter
}

// Limiter bounds the admission reviews in progress (webhook.AdmissionLimit): a
// review takes a slot once its body has arrived and gives it back when answered.
type Limiter interface {
	// Acquire takes a slot for r; ok is false when none freed in time.
	Acquire(r *http.Request) (release func(), ok bool)
	// Throttled answers a review that found no slot.
	Throttled(w http.ResponseWriter)
}

// NewHandler returns the HTTP handler for one webhook: a guard that answers malformed
// requests with a 4xx and a message that says what to send, then the review.
//
// kubewebhook stays the framework: cfg.Webhook is a kubewebhook Webhook, measured by
// kubewebhook's NewMeasuredWebhook, reviewing kubewebhook's model.AdmissionReview and
// answering with its response types. What the handler adds is its own decode: the
// AdmissionReview is read once, the object straight into the narrow types (see
// decodeReview), and the response is encoded as kubewebhook's handler encodes it
// (reviewResponse). A body that the single decode cannot take exactly as kubewebhook
// would goes to kubewebhook's own handler (kwhhttp.HandlerFor), unchanged.
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
	return guard{next: h, webhook: wh, kwhLogger: logger, logger: cfg.Logger, limit: cfg.Limit}, nil
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
	// next is kubewebhook's handler, for what the single decode does not take.
	next http.Handler
	// webhook reviews what the single decode took.
	webhook   kwhwebhook.Webhook
	kwhLogger kwhlog.Logger
	logger    *logrus.Entry
	limit     Limiter
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
	if ct := r.Header.Get("Content-Type"); ct != "application/json" && !isJSONMediaType(ct) {
		http.Error(w, fmt.Sprintf("content type %q is not supported: send the AdmissionReview as application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return
	}
	body, err := readBody(w, r)
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
	// The slot is taken once the body has arrived: decoding and planning are where a
	// review's memory goes, and a slow sender must not hold a slot.
	if g.limit != nil {
		release, ok := g.limit.Acquire(r)
		if !ok {
			g.limit.Throttled(w)
			return
		}
		defer release()
	}
	if rev, ok := decodeReview(body); ok {
		g.review(w, r, rev)
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

// firstBodyBuffer is the buffer a request body is first read into: an AdmissionReview
// of an ordinary pod (a few KiB) fits, so most bodies cost one allocation, while a
// connection that claims a large body and sends little holds no more than this.
const firstBodyBuffer = 8 << 10

// readBody reads the request body, at most MaxRequestBodyBytes, into a buffer that
// grows with the bytes received, never with the bytes claimed: Content-Length is only
// a claim, and a thousand connections each claiming 6 MB and sending 1 KiB must not
// cost 6 GB. The claim still caps each growth (it doubles, up to the claim + 1), so an
// honest body ends in a buffer of its own size.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := int64(MaxRequestBodyBytes) + 1 // + 1: the read that returns EOF needs room
	if r.ContentLength >= 0 && r.ContentLength < MaxRequestBodyBytes {
		limit = r.ContentLength + 1
	}
	body := make([]byte, 0, min(limit, firstBodyBuffer))
	rd := http.MaxBytesReader(w, r.Body, MaxRequestBodyBytes)
	for {
		if len(body) == cap(body) {
			grow := int64(cap(body))
			if room := limit - int64(len(body)); room > 0 && room < grow {
				grow = room
			}
			body = append(make([]byte, 0, int64(len(body))+max(grow, 512)), body...)
		}
		n, err := rd.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			return body, nil
		}
		if err != nil {
			return body, err
		}
	}
}

// review answers a review that decodeReview took, as kubewebhook's handler would:
// the same model.AdmissionReview (built by kubewebhook's own constructors), the same
// Webhook, the same response or error document and status code.
func (g guard) review(w http.ResponseWriter, r *http.Request, rev decodedReview) {
	ar := rev.model()
	ctx := withDecodedObject(r.Context(), rev.Request.Object)
	resp, err := g.webhook.Review(ctx, ar)
	status := http.StatusOK
	var data []byte
	if err != nil {
		g.kwhLogger.Errorf("Admission review error: %s", err)
		status = http.StatusInternalServerError
		data, err = reviewError(ar, err)
	} else if data, err = g.reviewResponse(ar, resp); err != nil {
		g.kwhLogger.Errorf("Could not map model response to JSON: %s", err)
		status = http.StatusInternalServerError
		data, err = reviewError(ar, err)
	}
	if err != nil {
		msg := fmt.Sprintf("could not marshall status error on admission response: %v", err)
		http.Error(w, msg, http.StatusInternalServerError)
		g.kwhLogger.Errorf(msg)
		return
	}
	if status == http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	if _, err := w.Write(data); err != nil {
		g.kwhLogger.Errorf("could not write response: %v", err)
	}
}

// reviewResponse encodes resp for ar as kubewebhook's handler does
// (modelResponseToJSON in kubewebhook's pkg/http, which is not exported): an
// AdmissionReview of ar's version with the response's uid, decision, patch and
// warnings (v1beta1 has no warnings).
func (g guard) reviewResponse(ar model.AdmissionReview, resp model.AdmissionResponse) ([]byte, error) {
	var (
		allowed  = true
		result   *metav1.Status
		patch    []byte
		warnings []string
		mutating bool
	)
	switch r := resp.(type) {
	case *model.ValidatingAdmissionResponse:
		allowed, warnings = r.Allowed, r.Warnings
		if !r.Allowed {
			result = &metav1.Status{Message: r.Message, Status: metav1.StatusFailure, Code: http.StatusBadRequest}
		}
	case *model.MutatingAdmissionResponse:
		patch, warnings, mutating = r.JSONPatchPatch, r.Warnings, true
	default:
		return nil, errors.New("unknown webhook response type")
	}
	if ar.Version == model.AdmissionReviewVersionV1beta1 {
		if len(warnings) > 0 {
			g.kwhLogger.Warningf("warnings used in a 'v1beta1' webhook")
		}
		out := &admissionv1beta1.AdmissionResponse{UID: types.UID(ar.ID), Allowed: allowed, Result: result}
		if mutating {
			pt := admissionv1beta1.PatchTypeJSONPatch
			out.PatchType, out.Patch = &pt, patch
		}
		return json.Marshal(admissionv1beta1.AdmissionReview{TypeMeta: typeMetaV1beta1, Response: out})
	}
	return appendReviewV1(make([]byte, 0, 256+base64.StdEncoding.EncodedLen(len(patch))), ar.ID, allowed, result, patch, mutating, warnings), nil
}

// appendReviewV1 writes the admission.k8s.io/v1 AdmissionReview that encoding/json
// writes for kubewebhook's response (same members, order and omissions), straight
// into one buffer: the patch is base64-encoded in place rather than through
// reflection and a copy.
func appendReviewV1(b []byte, uid string, allowed bool, result *metav1.Status, patch []byte, mutating bool, warnings []string) []byte {
	b = append(b, `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":`...)
	b = jsonbytes.String(b, uid)
	b = append(b, `,"allowed":`...)
	b = strconv.AppendBool(b, allowed)
	if result != nil {
		b = append(b, `,"status":{"metadata":{}`...)
		if result.Status != "" {
			b = append(b, `,"status":`...)
			b = jsonbytes.String(b, result.Status)
		}
		if result.Message != "" {
			b = append(b, `,"message":`...)
			b = jsonbytes.String(b, result.Message)
		}
		if result.Code != 0 {
			b = append(b, `,"code":`...)
			b = strconv.AppendInt(b, int64(result.Code), 10)
		}
		b = append(b, '}')
	}
	if len(patch) > 0 {
		b = append(b, `,"patch":"`...)
		b = base64.StdEncoding.AppendEncode(b, patch)
		b = append(b, '"')
	}
	if mutating {
		b = append(b, `,"patchType":"JSONPatch"`...)
	}
	if len(warnings) > 0 {
		b = append(b, `,"warnings":[`...)
		for i, w := range warnings {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonbytes.String(b, w)
		}
		b = append(b, ']')
	}
	return append(b, "}}"...)
}

// reviewError is the document kubewebhook's handler answers with (status 500) when
// the webhook returns an error.
func reviewError(ar model.AdmissionReview, err error) ([]byte, error) {
	status := &metav1.Status{Message: err.Error(), Status: metav1.StatusFailure}
	if ar.Version == model.AdmissionReviewVersionV1beta1 {
		return json.Marshal(admissionv1beta1.AdmissionReview{TypeMeta: typeMetaV1beta1,
			Response: &admissionv1beta1.AdmissionResponse{UID: types.UID(ar.ID), Result: status}})
	}
	return json.Marshal(admissionv1.AdmissionReview{TypeMeta: typeMetaV1,
		Response: &admissionv1.AdmissionResponse{UID: types.UID(ar.ID), Result: status}})
}

var (
	typeMetaV1      = metav1.TypeMeta{Kind: "AdmissionReview", APIVersion: "admission.k8s.io/v1"}
	typeMetaV1beta1 = metav1.TypeMeta{Kind: "AdmissionReview", APIVersion: "admission.k8s.io/v1beta1"}
)

// isJSONMediaType reports whether ct is application/json with parameters or in
// another case (the API server sends exactly "application/json", checked first
// because ParseMediaType allocates).
func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
