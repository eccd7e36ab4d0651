package webhook

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// NamespaceSource gives the admission path a namespace's labels and our annotations
// from memory. It must never call the API server.
type NamespaceSource interface {
	Namespace(name string) (scheduling.Namespace, bool)
}

// NamespaceCache is a NamespaceSource fed by a metadata-only informer on Namespaces.
// Only labels and sysctl-placement.io/* annotations are kept, so thousands of
// namespaces stay small.
type NamespaceCache struct {
	informer cache.SharedIndexInformer
	factory  metadatainformer.SharedInformerFactory
}

var namespacesResource = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// NewNamespaceCache builds the cache; call Start, then HasSynced reports readiness.
func NewNamespaceCache(client metadata.Interface, resync time.Duration) *NamespaceCache {
	factory := metadatainformer.NewSharedInformerFactoryWithOptions(client, resync,
		metadatainformer.WithTransform(trimNamespace))
	informer := factory.ForResource(namespacesResource).Informer()
	return &NamespaceCache{informer: informer, factory: factory}
}

// trimNamespace keeps what Plan reads: name, labels, our own annotations and the
// PodTolerationRestriction plugin's tolerationsWhitelist (Plan never adds a toleration
// outside it).
func trimNamespace(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	trimmed := &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta}
	trimmed.Name = m.Name
	trimmed.ResourceVersion = m.ResourceVersion
	trimmed.Labels = m.Labels
	for k, v := range m.Annotations {
		if strings.HasPrefix(k, scheduling.AnnotationPrefix) || k == scheduling.AnnotationTolerationsWhitelist {
			if trimmed.Annotations == nil {
				trimmed.Annotations = map[string]string{}
			}
			trimmed.Annotations[k] = v
		}
	}
	return trimmed, nil
}

// Start runs the informer until ctx ends.
func (c *NamespaceCache) Start(ctx context.Context) {
	c.factory.Start(ctx.Done())
}

// HasSynced reports whether the first list has been read.
func (c *NamespaceCache) HasSynced() bool { return c.informer.HasSynced() }

// WaitForSync blocks until the cache has synced or ctx ends.
func (c *NamespaceCache) WaitForSync(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.informer.HasSynced) {
		return fmt.Errorf("the namespace cache did not sync: %w", ctx.Err())
	}
	return nil
}

// Namespace returns the namespace's labels and annotations from the cache.
func (c *NamespaceCache) Namespace(name string) (scheduling.Namespace, bool) {
	obj, exists, err := c.informer.GetStore().GetByKey(name)
	if err != nil || !exists {
		return scheduling.Namespace{Name: name}, false
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return scheduling.Namespace{Name: name}, false
	}
	return scheduling.Namespace{Name: name, Labels: m.Labels, Annotations: m.Annotations}, true
}

// StaticNamespaces is a NamespaceSource from a fixed map, for `plan` and tests.
type StaticNamespaces map[string]scheduling.Namespace

// Namespace implements NamespaceSource.
func (s StaticNamespaces) Namespace(name string) (scheduling.Namespace, bool) {
	ns, ok := s[name]
	if !ok {
		return scheduling.Namespace{Name: name}, false
	}
	return ns, true
}
