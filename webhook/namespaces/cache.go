package namespaces

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Source gives the admission path a namespace's labels and our annotations from
// memory. It must never call the API server.
type Source interface {
	Namespace(name string) (scheduling.Namespace, bool)
}

// Cache is a Source fed by a metadata-only informer on Namespaces. Only labels (pool
// namespaceSelectors, the opt-in label and the Pod Security labels) and
// sysctl-placement.io/* annotations are kept, so thousands of namespaces stay small.
type Cache struct {
	cfg      CacheConfig
	informer cache.SharedIndexInformer
	factory  metadatainformer.SharedInformerFactory
}

var namespacesResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Client reads Namespaces' metadata (required).
	Client metadata.Interface
	// Resync is the informer's resync period; 0 never resyncs.
	Resync time.Duration
	// Metrics counts annotations too large to keep; nil counts nothing.
	Metrics *Metrics
	// Logger names each annotation too large to keep; nil logs nothing.
	Logger logrus.FieldLogger
}

func (c *CacheConfig) defaults() error {
	if c.Client == nil {
		return errors.New("a metadata client is required")
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	return nil
}

// Metrics counts what the cache leaves out.
type Metrics struct {
	oversized prometheus.Counter
}

// NewMetrics registers the cache's counter on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{oversized: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sysctl_placement_namespace_annotations_oversized_total",
		Help: "Namespace annotations read as empty because they are larger than the webhook keeps (4 KiB each, 16 KiB a namespace); the log names each.",
	})}
	reg.MustRegister(m.oversized)
	return m
}

func (m *Metrics) observeOversized() {
	if m != nil {
		m.oversized.Inc()
	}
}

// NewCache builds the cache; call Start, then HasSynced reports readiness.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid namespace cache configuration: %w", err)
	}
	c := &Cache{cfg: cfg}
	c.factory = metadatainformer.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync,
		metadatainformer.WithTransform(c.trimNamespace))
	c.informer = c.factory.ForResource(namespacesResource).Informer()
	return c, nil
}

// MaxAnnotationBytes bounds each annotation the cache keeps, and
// MaxNamespaceAnnotationBytes all of a namespace's together. The longest a real one
// needs — a pools list, a tolerationsWhitelist — is a few hundred bytes; an object may
// carry 256 KiB, which every replica would otherwise hold for every namespace.
const (
	MaxAnnotationBytes          = 4 << 10
	MaxNamespaceAnnotationBytes = 16 << 10
)

// trimNamespace keeps what Plan reads: name, labels, our own annotations and the
// PodTolerationRestriction plugin's tolerationsWhitelist (Plan never adds a toleration
// outside it), each within the bounds above.
func (c *Cache) trimNamespace(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	trimmed := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta}
	trimmed.Name = m.Name
	trimmed.ResourceVersion = m.ResourceVersion
	trimmed.Labels = m.Labels
	keys := slices.Sorted(maps.Keys(m.Annotations))
	total := 0
	for _, k := range keys {
		if !strings.HasPrefix(k, scheduling.AnnotationPrefix) && k != scheduling.AnnotationTolerationsWhitelist {
			continue
		}
		if trimmed.Annotations == nil {
			trimmed.Annotations = map[string]string{}
		}
		v := m.Annotations[k]
		if len(v) > MaxAnnotationBytes || total+len(v) > MaxNamespaceAnnotationBytes {
			// Kept empty rather than dropped: an empty value is invalid or empty
			// wherever it is read, which fails closed (a pools list that names no pool,
			// a whitelist that allows no toleration, a namespace not opted in), where a
			// missing one would lift the restriction it carries.
			c.cfg.Logger.WithFields(logrus.Fields{"namespace": m.Name, "annotation": k, "bytes": len(v)}).
				Warnf("namespace annotation is larger than %d bytes (or the namespace's annotations than %d); it is read as empty: shorten it", MaxAnnotationBytes, MaxNamespaceAnnotationBytes)
			c.cfg.Metrics.observeOversized()
			v = ""
		}
		total += len(v)
		trimmed.Annotations[k] = v
	}
	return trimmed, nil
}

// Start runs the informer until ctx ends.
func (c *Cache) Start(ctx context.Context) {
	c.factory.Start(ctx.Done())
}

// HasSynced reports whether the first list has been read.
func (c *Cache) HasSynced() bool { return c.informer.HasSynced() }

// WaitForSync blocks until the cache has synced or ctx ends.
func (c *Cache) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced) {
		return fmt.Errorf("the namespace cache did not sync: %w", ctx.Err())
	}
	return nil
}

// Namespace returns the namespace's labels and annotations from the cache.
func (c *Cache) Namespace(name string) (scheduling.Namespace, bool) {
	obj, exists, err := c.informer.GetStore().GetByKey(name)
	if err != nil || !exists {
		return scheduling.Namespace{Name: name}, false
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return scheduling.Namespace{Name: name}, false
	}
	return namespaceOf(m), true
}

func namespaceOf(m *metav1.PartialObjectMetadata) scheduling.Namespace {
	return scheduling.Namespace{Name: m.Name, Labels: m.Labels, Annotations: m.Annotations}
}

// Watcher hears about the namespaces the cache holds (webhook.PodSecurityConflicts).
// Its methods run on the informer's goroutine and must return quickly.
type Watcher interface {
	NamespaceChanged(scheduling.Namespace)
	NamespaceDeleted(name string)
}

// Watch tells w about every namespace the cache adds, updates (resyncs included) or
// deletes. Call it before Start.
func (c *Cache) Watch(w Watcher) error {
	changed := func(obj any) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			w.NamespaceChanged(namespaceOf(m))
		}
	}
	_, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: func(obj any) {
			if name, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				w.NamespaceDeleted(name)
			}
		},
	})
	return err
}

// Static is a Source from a fixed map, for `plan` and tests.
type Static map[string]scheduling.Namespace

// Namespace implements Source.
func (s Static) Namespace(name string) (scheduling.Namespace, bool) {
	ns, ok := s[name]
	if !ok {
		return scheduling.Namespace{Name: name}, false
	}
	return ns, true
}
