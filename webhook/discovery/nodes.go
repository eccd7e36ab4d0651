package discovery

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// TrimNode is the Node informer's transform: it keeps only what discovery reads —
// labels, our annotations, taints, the kubelet and kernel versions, the boot ID, the
// Ready condition, the addresses and the kubelet port — so that the cache of 5,000
// Nodes stays a few MiB instead of hundreds (images, managed fields, capacity and
// conditions are dropped).
func TrimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone, handled by the informer
	}
	t := &corev1.Node{}
	t.Name = n.Name
	t.UID = n.UID
	t.ResourceVersion = n.ResourceVersion
	t.Labels = make(map[string]string, len(n.Labels))
	for k, v := range n.Labels {
		t.Labels[labelStrings.intern(k)] = labelStrings.intern(v)
	}
	if v, ok := n.Annotations[AnnotationAllowedUnsafeSysctls]; ok {
		t.Annotations = map[string]string{AnnotationAllowedUnsafeSysctls: v}
	}
	t.Spec.Taints = n.Spec.Taints
	t.Spec.Unschedulable = n.Spec.Unschedulable
	t.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion: n.Status.NodeInfo.KubeletVersion,
		KernelVersion:  n.Status.NodeInfo.KernelVersion,
		BootID:         n.Status.NodeInfo.BootID,
	}
	t.Status.DaemonEndpoints.KubeletEndpoint.Port = n.Status.DaemonEndpoints.KubeletEndpoint.Port
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			t.Status.Addresses = append(t.Status.Addresses, a)
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			t.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
		}
	}
	return t, nil
}

var _ cache.TransformFunc = TrimNode

// cachedNodes returns the Nodes of an informer's store.
func cachedNodes(store cache.Store) []*corev1.Node {
	objs := store.List()
	nodes := make([]*corev1.Node, 0, len(objs))
	for _, o := range objs {
		if n, ok := o.(*corev1.Node); ok {
			nodes = append(nodes, n)
		}
	}
	return nodes
}

// needsProbe reports whether a Node changed in a way that may change what its kubelet
// allows or where to reach it: a new kubelet version, address or port, a reboot (boot
// ID), or a Ready transition (a kubelet restart re-posts Ready). Label, taint and
// heartbeat changes do not need a probe.
func needsProbe(old, cur *corev1.Node) bool {
	if old == nil {
		return true
	}
	if old.Status.NodeInfo.KubeletVersion != cur.Status.NodeInfo.KubeletVersion ||
		old.Status.NodeInfo.BootID != cur.Status.NodeInfo.BootID ||
		old.Status.DaemonEndpoints.KubeletEndpoint.Port != cur.Status.DaemonEndpoints.KubeletEndpoint.Port ||
		internalIP(old) != internalIP(cur) {
		return true
	}
	or, cr := readyCondition(old), readyCondition(cur)
	return or.Status != cr.Status || !or.LastTransitionTime.Equal(&cr.LastTransitionTime)
}

// needsRegroup reports whether a Node changed in a way that changes the pools.
func needsRegroup(old, cur *corev1.Node) bool {
	if old == nil {
		return true
	}
	return !equalMaps(old.Labels, cur.Labels) || !equalTaints(old.Spec.Taints, cur.Spec.Taints) ||
		old.Status.NodeInfo.KubeletVersion != cur.Status.NodeInfo.KubeletVersion ||
		old.Status.NodeInfo.KernelVersion != cur.Status.NodeInfo.KernelVersion ||
		old.Annotations[AnnotationAllowedUnsafeSysctls] != cur.Annotations[AnnotationAllowedUnsafeSysctls]
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

func readyCondition(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func equalTaints(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].Value != b[i].Value || a[i].Effect != b[i].Effect {
			return false
		}
	}
	return true
}

// labelStrings interns node label keys and values: thousands of nodes repeat the same
// few hundred (zone, instance type, pool, OS), and the decoder allocates each anew.
var labelStrings = &interner{max: 1 << 16}

// interner is a bounded string interner; once full it stops adding, so label values
// unique to each node (hostnames) cannot grow it without limit.
type interner struct {
	mu      sync.Mutex
	strings map[string]string
	max     int
}

func (i *interner) intern(s string) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	if v, ok := i.strings[s]; ok {
		return v
	}
	if i.strings == nil {
		i.strings = map[string]string{}
	}
	if len(i.strings) < i.max {
		i.strings[s] = s
	}
	return s
}

// nodeInformer is a Node informer whose objects are trimmed by TrimNode. Informers are
// built one by one, never through informers.SharedInformerFactory: the factory can
// build an informer for every resource of the API, so it links every typed client
// and lister into the binary.
func nodeInformer(client kubernetes.Interface, resync time.Duration) (cache.SharedIndexInformer, error) {
	informer := coreinformers.NewNodeInformer(client, resync, cache.Indexers{})
	if err := informer.SetTransform(TrimNode); err != nil {
		return nil, err
	}
	return informer, nil
}

// startInformers runs the informers until ctx ends or the returned stop is called;
// stop returns once they have all stopped.
func startInformers(ctx context.Context, informers ...cache.SharedIndexInformer) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, informer := range informers {
		wg.Go(func() { informer.RunWithContext(ctx) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}
