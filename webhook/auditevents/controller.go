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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"
	"k8s.io/client-go/util/workqueue"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// PlacedPodSelector is the server-side label selector of the pods the Controller watches.
var PlacedPodSelector = labels.SelectorFromSet(labels.Set{scheduling.LabelPlaced: "true"}).String()

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// listPageSize is how many pods' metadata one list call returns. Anyone may label a
// pod placed and give it 256 KiB of annotations, so a page is bounded by its count:
// 16 such pods are 4 MiB in flight, trimmed before the next page is read.
const listPageSize = 16

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	// Client reads each placed pod in full once, to check it against its audit record
	// and name its sysctls (required; RBAC pods list: by name, with the label).
	Client kubernetes.Interface
	// Metadata lists and watches the placed pods' metadata (required; RBAC pods list,
	// watch).
	Metadata metadata.Interface
	// Recorder writes the Events (required).
	Recorder *Recorder
	// MaxPodAge: older pods get no Event (it may have been recorded and expired).
	// It must stay below kube-apiserver's --event-ttl (one hour by default). Default 30m.
	MaxPodAge time.Duration
	// Workers write Events concurrently. Default 2.
	Workers int
	// NamespaceBudget is each namespace's allowance of placed pods handled: a flood in
	// one namespace waits for its own tokens, and a pod whose turn would come after
	// MaxPodAge is dropped (namespace_budget). Default 10 per second, 100 at once.
	NamespaceBudget Budget
	// Logger gets failures; nil logs nothing.
	Logger logrus.FieldLogger

	now func() time.Time // replaced by tests
}

func (c *ControllerConfig) defaults() error {
	if c.Client == nil {
		return errors.New("a Kubernetes client is required")
	}
	if c.Metadata == nil {
		return errors.New("a metadata client is required")
	}
	if c.Recorder == nil {
		return errors.New("an event recorder is required")
	}
	if c.MaxPodAge <= 0 {
		c.MaxPodAge = 30 * time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.NamespaceBudget.PerSecond <= 0 || c.NamespaceBudget.Burst <= 0 {
		c.NamespaceBudget = Budget{PerSecond: 10, Burst: 100}
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	if c.now == nil {
		c.now = time.Now
	}
	return nil
}

// Controller records the Events of placed pods once they exist: it watches only the
// metadata of pods labelled sysctl-placement.io/placed=true, reads each one it has not
// ruled out in full once, and derives one Event per reason from its audit annotation.
// See the package documentation for why each is recorded once, and admitted.go for
// how a forged placement is told apart.
type Controller struct {
	cfg ControllerConfig
}

// NewController builds a Controller; Run it while this replica leads.
func NewController(cfg ControllerConfig) (*Controller, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid audit events controller configuration: %w", err)
	}
	return &Controller{cfg: cfg}, nil
}

// Run lists and watches placed pods and records their Events until ctx ends. Each Run
// starts from a fresh list, so a replica that becomes leader again sees every pod.
func (c *Controller) Run(ctx context.Context) error {
	informer := cache.NewSharedIndexInformer(c.listWatch(), &metav1.PartialObjectMetadata{}, 0, cache.Indexers{})
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "sysctl-placement-audit-events"})
	defer queue.ShutDown()
	budgets := newNamespaceBudgets(c.cfg.NamespaceBudget)
	// Only additions: the audit annotation is written at creation, and a resync or a
	// relist reports known pods as updates, which need nothing.
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
				c.enqueue(m, queue, budgets)
			}
		},
	}); err != nil {
		return fmt.Errorf("could not set up the pod informer: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { informer.RunWithContext(ctx) })
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil // ctx ended first
	}
	for range c.cfg.Workers {
		wg.Go(func() {
			for c.processNext(ctx, queue, informer.GetStore()) {
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	return nil
}

// listWatch lists and watches placed pods' metadata, trimmed as it arrives (see
// trimPodMetadata): a list page at a time and a watch event at a time, never a whole
// list of untrimmed objects.
func (c *Controller) listWatch() cache.ListerWatcher {
	pods := c.cfg.Metadata.Resource(podsResource).Namespace(metav1.NamespaceAll)
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
				page, err := pods.List(ctx, opts)
				if err != nil {
					return nil, err
				}
				for i := range page.Items {
					page.Items[i] = *trimPodMetadata(&page.Items[i])
				}
				return page, nil
			})
			// A list that expires half way fails and is retried whole by the informer,
			// never read in one response.
			p.PageSize, p.FullListIfExpired = listPageSize, false
			// A consistent list (no resourceVersion): the watch cache answers
			// resourceVersion=0 in one response, whatever the limit.
			list, _, err := p.List(ctx, metav1.ListOptions{LabelSelector: PlacedPodSelector})
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.LabelSelector = PlacedPodSelector
			w, err := pods.Watch(ctx, opts)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, trimEvent), nil
		},
	}, c.cfg.Metadata)
}

// oversizedMarker replaces, in the informer's cache only, a placement annotation
// larger than MaxPlacementAnnotationBytes: the cache never holds what a pod's creator
// chose to put there.
const oversizedMarker = scheduling.AnnotationPlacement + "-oversized"

// trimPodMetadata keeps what enqueue reads — identity, creation time, our label, and
// whether the placement annotation is too large — so the cache holds a few hundred
// bytes per pod whatever its creator put in its metadata. The annotation itself is
// read from the pod when its turn comes.
func trimPodMetadata(m *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
	t := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta}
	t.Name = m.Name
	t.Namespace = m.Namespace
	t.UID = m.UID
	t.ResourceVersion = m.ResourceVersion
	t.CreationTimestamp = m.CreationTimestamp
	if v, ok := m.Labels[scheduling.LabelPlaced]; ok {
		t.Labels = map[string]string{scheduling.LabelPlaced: v}
	}
	if len(m.Annotations[scheduling.AnnotationPlacement]) > MaxPlacementAnnotationBytes {
		t.Annotations = map[string]string{oversizedMarker: "true"}
	}
	return t
}

// trimEvent trims the object of a watch event. Bookmarks pass unchanged: their
// annotations say where the initial events of a streaming list end.
func trimEvent(e watch.Event) (watch.Event, bool) {
	if e.Type == watch.Bookmark || e.Type == watch.Error {
		return e, true
	}
	if m, ok := e.Object.(*metav1.PartialObjectMetadata); ok {
		e.Object = trimPodMetadata(m)
	}
	return e, true
}

// enqueue queues a new placed pod when its namespace's budget allows, unless it is
// ruled out by its metadata alone: too old, or an annotation too large to be ours.
func (c *Controller) enqueue(m *metav1.PartialObjectMetadata, queue workqueue.TypedRateLimitingInterface[string], budgets *namespaceBudgets) {
	metrics := c.cfg.Recorder.cfg.Metrics
	if m.Labels[scheduling.LabelPlaced] != "true" {
		return
	}
	now := c.cfg.now()
	age := now.Sub(m.CreationTimestamp.Time)
	if age > c.cfg.MaxPodAge {
		metrics.observeSkipped(SkipPodTooOld)
		return
	}
	log := c.cfg.Logger.WithFields(logrus.Fields{"namespace": m.Namespace, "pod": m.Name})
	if m.Annotations[oversizedMarker] != "" {
		metrics.observeDropped(DropOversized)
		log.Warnf("placed pod's %s annotation is larger than %d bytes, more than the webhook writes; no Event recorded", scheduling.AnnotationPlacement, MaxPlacementAnnotationBytes)
		return
	}
	delay, ok := budgets.reserve(m.Namespace, now, c.cfg.MaxPodAge-age)
	if !ok {
		metrics.observeDropped(DropNamespaceBudget)
		log.Warn("the namespace has more placed pods than its budget of Events allows before they are too old; no Event recorded")
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(m)
	if err != nil {
		return
	}
	queue.AddAfter(key, delay)
}

// processNext handles one pod; false means the queue is shut down.
func (c *Controller) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], store cache.Store) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	if _, exists, err := store.GetByKey(key); err != nil || !exists {
		queue.Forget(key)
		return true
	}
	pod, err := c.readPod(ctx, key)
	if err == nil && pod != nil {
		err = c.recordPod(ctx, pod)
	}
	if err != nil {
		if retryable(err) && ctx.Err() == nil {
			queue.AddRateLimited(key)
			return true
		}
		c.cfg.Recorder.cfg.Metrics.observeDropped(DropWriteFailed)
		c.cfg.Logger.WithField("pod", key).WithError(err).
			Warn("could not record the pod's Events; check the API server and the pods list and events.k8s.io create permissions")
	}
	queue.Forget(key)
	return true
}

// readPod reads the placed pod named by key in full, or nil once it is gone. It lists
// by name, which the informer's list permission covers, rather than get.
func (c *Controller) readPod(ctx context.Context, key string) (*corev1.Pod, error) {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Recorder.cfg.WriteTimeout)
	defer cancel()
	list, err := c.cfg.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: PlacedPodSelector,
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("could not read pod %s: %w", key, err)
	}
	for i := range list.Items {
		if list.Items[i].Name == name {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// recordPod writes every Event pod's audit record calls for. An error means at least
// one was not written; the others are done, and a retry finds them AlreadyExists.
func (c *Controller) recordPod(ctx context.Context, pod *corev1.Pod) error {
	metrics := c.cfg.Recorder.cfg.Metrics
	if pod.Labels[scheduling.LabelPlaced] != "true" {
		return nil
	}
	if c.cfg.now().Sub(pod.CreationTimestamp.Time) > c.cfg.MaxPodAge {
		metrics.observeSkipped(SkipPodTooOld)
		return nil
	}
	log := c.cfg.Logger.WithFields(logrus.Fields{"namespace": pod.Namespace, "pod": pod.Name})
	audit, err := admittedAudit(pod)
	switch {
	case errors.Is(err, errNoChange) || errors.Is(err, errNotCarried):
		metrics.observeSkipped(SkipNotAdmitted)
		log.WithError(err).Warn("placed pod was not placed by the webhook (its label and annotation were set by its creator); no Event recorded")
		return nil
	case err != nil:
		metrics.observeSkipped(SkipInvalidAudit)
		log.WithError(err).Warn("placed pod has no valid " + scheduling.AnnotationPlacement + " annotation; no Event recorded")
		return nil
	}
	regarding := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	now := c.cfg.now()
	var errs []error
	for _, e := range ForPod(audit, scheduling.SysctlNames(pod)) {
		if err := c.cfg.Recorder.write(ctx, newEvent(regarding, e, 0, c.cfg.Recorder.instance, now)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
