package auditevents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"

	"github.com/sysctl-placement/sysctl-placement/webhook"
)

// RecorderConfig configures a Recorder.
type RecorderConfig struct {
	// Sink writes Events (required): &events.EventSinkImpl{Interface: client.EventsV1()}.
	Sink events.EventSink
	// Identity names this replica in reportingInstance (required; the pod name).
	Identity string
	// QueueSize bounds the Events waiting to be written from the admission path; more
	// are dropped and counted. Default 1024.
	QueueSize int
	// WorkloadInterval is how often at most one replica reports the same workload and
	// reason (a ReplicaSet retrying a denied pod). Default 10 minutes.
	WorkloadInterval time.Duration
	// NamespaceBudget is each namespace's allowance of workload Events (after
	// de-duplication): more are dropped (namespace_budget), so a flood of denied pods
	// in one namespace never fills the queue or the de-duplication memory that every
	// other namespace shares. Default 0.2 per second (12 a minute), 20 at once.
	NamespaceBudget Budget
	// WriteTimeout bounds one API call. Default 10 seconds.
	WriteTimeout time.Duration
	// Metrics counts Events; nil counts nothing.
	Metrics *Metrics
	// Logger gets failures; nil logs nothing.
	Logger logrus.FieldLogger

	// now and retryDelay are replaced by tests.
	now        func() time.Time
	retryDelay time.Duration
}

func (c *RecorderConfig) defaults() error {
	if c.Sink == nil {
		return errors.New("an event sink is required")
	}
	if c.Identity == "" {
		return errors.New("an identity is required (the pod name)")
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 1024
	}
	if c.WorkloadInterval <= 0 {
		c.WorkloadInterval = 10 * time.Minute
	}
	if c.NamespaceBudget.PerSecond <= 0 || c.NamespaceBudget.Burst <= 0 {
		c.NamespaceBudget = Budget{PerSecond: 0.2, Burst: 20}
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.retryDelay <= 0 {
		c.retryDelay = time.Second
	}
	return nil
}

// maxTrackedWorkloads bounds the memory of which workloads were reported recently.
// A namespace's budget keeps its own share to Burst + PerSecond × WorkloadInterval
// (140 by default), so only many namespaces flooding at once reach it.
const maxTrackedWorkloads = 4096

// writeAttempts is how often an Event from the admission path is tried before it is
// dropped; the queue, not the retries, absorbs an API server outage.
const writeAttempts = 3

// Recorder writes Events. It is the webhook's WorkloadObserver (Events on workloads,
// queued, never blocking the admission) and the Controller's writer (Events on pods,
// written synchronously from the controller's own workers).
type Recorder struct {
	cfg      RecorderConfig
	instance string
	queue    chan *eventsv1.Event
	budgets  *namespaceBudgets

	mu sync.Mutex
	// reported: namespace/workload UID/reason → when it was last queued. The UID comes
	// from the pod's ownerReference, which the pod's creator writes: keyed without the
	// namespace, one tenant could name another's workload and silence its Events.
	reported map[string]time.Time
}

var _ webhook.WorkloadObserver = (*Recorder)(nil)

// NewRecorder builds a Recorder; call Run to write what the admission path queues.
func NewRecorder(cfg RecorderConfig) (*Recorder, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid event recorder configuration: %w", err)
	}
	return &Recorder{
		cfg:      cfg,
		instance: reportingInstance(cfg.Identity),
		queue:    make(chan *eventsv1.Event, cfg.QueueSize),
		budgets:  newNamespaceBudgets(cfg.NamespaceBudget),
		reported: map[string]time.Time{},
	}, nil
}

// PodDenied queues a Warning Event on the pod's owner. It never blocks.
func (r *Recorder) PodDenied(d webhook.DeniedPod) {
	owner := corev1.ObjectReference{
		APIVersion: d.Owner.APIVersion,
		Kind:       d.Owner.Kind,
		Name:       d.Owner.Name,
		UID:        d.Owner.UID,
		Namespace:  d.Namespace,
	}
	r.offerWorkloadEvent(owner, ForDenial(d))
}

// TemplateChanged queues a Warning Event per reason on the workload. It never blocks.
func (r *Recorder) TemplateChanged(c webhook.ChangedTemplate) {
	workload := corev1.ObjectReference{
		APIVersion: c.APIVersion,
		Kind:       c.Kind,
		Name:       c.Name,
		UID:        c.UID,
		Namespace:  c.Namespace,
	}
	for _, e := range ForTemplate(c.Audit) {
		r.offerWorkloadEvent(workload, e)
	}
}

// offerWorkloadEvent queues e about workload unless the same workload and reason was
// queued within the interval, its namespace has spent its budget, or the queue is full.
func (r *Recorder) offerWorkloadEvent(workload corev1.ObjectReference, e Entry) {
	now := r.cfg.now()
	key := workload.Namespace + "/" + string(workload.UID) + "/" + e.Reason
	switch r.remember(key, workload.Namespace, now) {
	case rememberRepeated:
		r.cfg.Metrics.observeSkipped(SkipRepeated)
		return
	case rememberOverBudget:
		r.cfg.Metrics.observeDropped(DropNamespaceBudget)
		return
	case rememberFull:
		r.cfg.Metrics.observeDropped(DropTooManyWorkloads)
		return
	}
	bucket := now.UnixNano() / int64(r.cfg.WorkloadInterval)
	select {
	case r.queue <- newEvent(workload, e, bucket, r.instance, now):
	default:
		// Let the next attempt of this workload try again.
		r.forget(key)
		r.cfg.Metrics.observeDropped(DropQueueFull)
	}
}

type rememberResult int

const (
	rememberNew rememberResult = iota
	rememberRepeated
	rememberOverBudget
	rememberFull
)

// remember records that key is reported at now, unless it was within the interval or
// namespace has no budget left. A repeat costs no budget.
func (r *Recorder) remember(key, namespace string, now time.Time) rememberResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.reported[key]; ok && now.Sub(last) < r.cfg.WorkloadInterval {
		return rememberRepeated
	}
	if !r.budgets.allow(namespace, now) {
		return rememberOverBudget
	}
	if len(r.reported) >= maxTrackedWorkloads {
		for k, last := range r.reported {
			if now.Sub(last) >= r.cfg.WorkloadInterval {
				delete(r.reported, k)
			}
		}
		if len(r.reported) >= maxTrackedWorkloads {
			return rememberFull
		}
	}
	r.reported[key] = now
	return rememberNew
}

func (r *Recorder) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.reported, key)
}

// Run writes queued Events until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-r.queue:
			r.writeWithRetries(ctx, ev)
		}
	}
}

// writeWithRetries tries ev a few times; the admission path has no one to hand a
// failure back to.
func (r *Recorder) writeWithRetries(ctx context.Context, ev *eventsv1.Event) {
	delay := r.cfg.retryDelay
	for attempt := 1; ; attempt++ {
		err := r.write(ctx, ev)
		if err == nil {
			return
		}
		if !retryable(err) || attempt == writeAttempts || ctx.Err() != nil {
			r.cfg.Metrics.observeDropped(DropWriteFailed)
			r.cfg.Logger.WithFields(logrus.Fields{"namespace": ev.Namespace, "kind": ev.Regarding.Kind, "name": ev.Regarding.Name, "reason": ev.Reason}).
				WithError(err).Warn("could not record an Event; check the API server and the events.k8s.io create permission")
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay *= 2
	}
}

// write creates ev once. An Event that already exists counts as written.
func (r *Recorder) write(ctx context.Context, ev *eventsv1.Event) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.WriteTimeout)
	defer cancel()
	_, err := r.cfg.Sink.Create(ctx, ev.DeepCopy())
	switch {
	case err == nil:
		r.cfg.Metrics.observeRecorded(ev.Reason)
		return nil
	case apierrors.IsAlreadyExists(err):
		r.cfg.Metrics.observeSkipped(SkipAlreadyRecorded)
		return nil
	default:
		return fmt.Errorf("could not create Event %s/%s: %w", ev.Namespace, ev.Name, err)
	}
}

// retryable tells transient failures (the API server busy, down or slow) from refusals
// that would fail again (forbidden, invalid).
func retryable(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return true // transport errors, timeouts
	}
	return apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err)
}
