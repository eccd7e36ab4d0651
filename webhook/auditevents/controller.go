package auditevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// PlacedPodSelector is the server-side label selector of the pods the Controller watches.
var PlacedPodSelector = labels.SelectorFromSet(labels.Set{scheduling.LabelPlaced: "true"}).String()

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	// Client lists and watches pods (required; RBAC pods list, watch).
	Client kubernetes.Interface
	// Recorder writes the Events (required).
	Recorder *Recorder
	// MaxPodAge: older pods get no Event (it may have been recorded and expired).
	// It must stay below kube-apiserver's --event-ttl (one hour by default). Default 30m.
	MaxPodAge time.Duration
	// Workers write Events concurrently. Default 2.
	Workers int
	// Logger gets failures; nil logs nothing.
	Logger logrus.FieldLogger

	now func() time.Time // replaced by tests
}

func (c *ControllerConfig) defaults() error {
	if c.Client == nil {
		return errors.New("a Kubernetes client is required")
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

// Controller records the Events of placed pods once they exist: it watches only pods
// labelled sysctl-placement.io/placed=true and derives one Event per reason from their
// audit annotation. See the package documentation for why each is recorded once.
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
	informer := coreinformers.NewFilteredPodInformer(c.cfg.Client, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = PlacedPodSelector })
	if err := informer.SetTransform(trimPod); err != nil {
		return fmt.Errorf("could not set up the pod informer: %w", err)
	}
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "sysctl-placement-audit-events"})
	defer queue.ShutDown()
	// Only additions: the audit annotation is written at creation, and a resync or a
	// relist reports known pods as updates, which need nothing.
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				queue.Add(key)
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

// processNext handles one pod; false means the queue is shut down.
func (c *Controller) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], store cache.Store) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	obj, exists, err := store.GetByKey(key)
	if err != nil || !exists {
		queue.Forget(key)
		return true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		queue.Forget(key)
		return true
	}
	if err := c.recordPod(ctx, pod); err != nil {
		if retryable(err) && ctx.Err() == nil {
			queue.AddRateLimited(key)
			return true
		}
		c.cfg.Recorder.cfg.Metrics.observeDropped(DropWriteFailed)
		c.cfg.Logger.WithFields(logrus.Fields{"namespace": pod.Namespace, "pod": pod.Name}).WithError(err).
			Warn("could not record the pod's Events; check the API server and the events.k8s.io create permission")
	}
	queue.Forget(key)
	return true
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
	var audit scheduling.Audit
	raw, ok := pod.Annotations[scheduling.AnnotationPlacement]
	if !ok || json.Unmarshal([]byte(raw), &audit) != nil {
		metrics.observeSkipped(SkipInvalidAudit)
		c.cfg.Logger.WithFields(logrus.Fields{"namespace": pod.Namespace, "pod": pod.Name}).
			Warn("placed pod has no valid " + scheduling.AnnotationPlacement + " annotation; no Event recorded")
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

// trimPod keeps what the Controller reads — identity, creation time, our label and
// annotation, the sysctl names — so the cache holds a few hundred bytes per pod.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	t := &corev1.Pod{}
	t.Name = pod.Name
	t.Namespace = pod.Namespace
	t.UID = pod.UID
	t.ResourceVersion = pod.ResourceVersion
	t.CreationTimestamp = pod.CreationTimestamp
	if v, ok := pod.Labels[scheduling.LabelPlaced]; ok {
		t.Labels = map[string]string{scheduling.LabelPlaced: v}
	}
	if v, ok := pod.Annotations[scheduling.AnnotationPlacement]; ok {
		t.Annotations = map[string]string{scheduling.AnnotationPlacement: v}
	}
	if sc := pod.Spec.SecurityContext; sc != nil && len(sc.Sysctls) > 0 {
		t.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: make([]corev1.Sysctl, len(sc.Sysctls))}
		for i, s := range sc.Sysctls {
			t.Spec.SecurityContext.Sysctls[i] = corev1.Sysctl{Name: s.Name}
		}
	}
	return t, nil
}
