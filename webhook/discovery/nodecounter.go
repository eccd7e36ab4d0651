package discovery

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NodeCounter keeps the Publisher's node list current when the config has no
// discovery section, so that a config pool matching no node (a sample pool left in
// place, a mistyped label) is reported as with discovery: logged once when it appears,
// the sysctl_placement_pool_nodes gauge, and `pools`. It discovers no pool.
type NodeCounter struct {
	informer  cache.SharedIndexInformer
	publisher Publisher
	batch     time.Duration
	changed   chan struct{}
}

// NewNodeCounter builds a NodeCounter over a trimmed Node informer; call Run.
func NewNodeCounter(client kubernetes.Interface, publisher Publisher) (*NodeCounter, error) {
	if client == nil || publisher == nil {
		return nil, fmt.Errorf("node counter: a Kubernetes client and a publisher are required")
	}
	informer, err := nodeInformer(client, 0)
	if err != nil {
		return nil, fmt.Errorf("node counter: %w", err)
	}
	n := &NodeCounter{
		informer:  informer,
		publisher: publisher,
		batch:     100 * time.Millisecond,
		changed:   make(chan struct{}, 1),
	}
	_, err = n.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { n.signal() },
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*corev1.Node)
			cur, ok2 := obj.(*corev1.Node)
			if ok1 && ok2 && needsRegroup(old, cur) {
				n.signal()
			}
		},
		DeleteFunc: func(any) { n.signal() },
	})
	if err != nil {
		return nil, fmt.Errorf("node counter: %w", err)
	}
	return n, nil
}

func (n *NodeCounter) signal() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// Run publishes the nodes after the first list and after each change (batched), until
// ctx ends.
func (n *NodeCounter) Run(ctx context.Context) error {
	defer startInformers(ctx, n.informer)()
	if !cache.WaitForCacheSync(ctx.Done(), n.informer.HasSynced) {
		return nil // ctx ended
	}
	n.publish()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.changed:
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(n.batch):
			}
			n.publish()
		}
	}
}

func (n *NodeCounter) publish() {
	n.publisher.SetDiscovered(nil, cachedNodes(n.informer.GetStore()))
}
