package webhook

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// DefaultMaxConcurrentAdmissions is the default of serve's --max-concurrent-admissions.
//
// A review is CPU-bound and answers in milliseconds (no API call on the admission
// path), so more reviews at once than a few per core gain no throughput; what they
// add is memory. The worst review is a body at review.MaxRequestBodyBytes (6 MiB) and its
// decoded objects, an estimated 20 MiB live once the answer itself is bounded
// (issue 23, finding 1): 8 of them, about 160 MiB, fit beside serve's idle 40–60 MiB
// under the shipped 256 MiB memory limit, and 16 would not.
const DefaultMaxConcurrentAdmissions = 8

// DefaultAdmissionQueueWait is how long a review waits for a free slot before it is
// answered 429. It is a third of the shipped timeoutSeconds (3 s), so that the API
// server, which honours Retry-After within its webhook timeout, has time to retry.
const DefaultAdmissionQueueWait = time.Second

// AdmissionLimit bounds the admission reviews in progress, across /mutate and
// /validate: memory then grows with the limit, not with what callers send at once.
// A review that finds every slot taken waits at most the queue wait (less when the
// API server's own deadline, its ?timeout= parameter, is shorter), then is answered
// 429 Too Many Requests with Retry-After: 1, which the API server's webhook client
// (client-go's rest client) retries within the webhook timeout. The body is read
// before a slot is taken, so a client that sends slowly never holds one; what it
// holds is the bytes it sent (see the review package's readBody) until the server's ReadTimeout.
type AdmissionLimit struct {
	slots   chan struct{}
	wait    time.Duration
	metrics *Metrics
}

// NewAdmissionLimit returns a limit of max reviews at once; wait is the longest a
// review waits for a slot. metrics may be nil.
func NewAdmissionLimit(max int, wait time.Duration, metrics *Metrics) (*AdmissionLimit, error) {
	if max < 1 {
		return nil, errors.New("the limit of concurrent admissions must be at least 1")
	}
	if wait < 0 {
		return nil, errors.New("the admission queue wait must not be negative")
	}
	return &AdmissionLimit{slots: make(chan struct{}, max), wait: wait, metrics: metrics}, nil
}

// Acquire takes a slot for r, waiting as AdmissionLimit says; release gives it back.
// ok is false when no slot freed in time (or the caller went away).
func (l *AdmissionLimit) Acquire(r *http.Request) (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	release = func() {
		<-l.slots
		l.metrics.observeAdmissionDone()
	}
	select {
	case l.slots <- struct{}{}:
		l.metrics.observeAdmissionStarted()
		return release, true
	default:
	}
	l.metrics.observeAdmissionQueued()
	wait := l.wait
	// The API server sends its deadline (the webhook's timeoutSeconds) as ?timeout=;
	// waiting past half of it would leave it no time to retry.
	if d, err := time.ParseDuration(r.URL.Query().Get("timeout")); err == nil && d > 0 && d/2 < wait {
		wait = d / 2
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	select {
	case l.slots <- struct{}{}:
		l.metrics.observeAdmissionStarted()
		return release, true
	case <-ctx.Done():
		l.metrics.observeAdmissionThrottled()
		return nil, false
	}
}

// Throttled answers a review that found no slot: 429 with Retry-After, which the API
// server's client retries.
func (l *AdmissionLimit) Throttled(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, "too many admission reviews in progress on this replica; retry (the API server does, within the webhook timeout)", http.StatusTooManyRequests)
}
