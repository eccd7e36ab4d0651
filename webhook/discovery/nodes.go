package discovery

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// TrimNode is the Node informer's transform: it keeps only what discovery reads —
// labels, our annotations, taints, the kubelet and kernel versions, the boot ID, the
// Ready condition, the addresses and the kubelet port — so that the cache of 5,000
// Nodes stays a few MiB instead of hundreds (images, managed fields, capacity and
// conditions are dropped). What the nodes of a pool repeat is stored once and shared:
// label keys and values, versions, taints and the allowlist annotation (see
// intern and nodeShared); the objects are read-only, as every informer's are.
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
		switch {
		case k == corev1.LabelHostname && v == n.Name:
			v = t.Name // the usual case: the name's bytes, not a second copy
		case k != corev1.LabelHostname:
			v = intern(v) // a hostname is one node's: interning it would only add an entry
		}
		t.Labels[intern(k)] = v
	}
	if v, ok := n.Annotations[AnnotationAllowedUnsafeSysctls]; ok {
		t.Annotations = sharedAllowlistAnnotations.get(v, func() map[string]string {
			return map[string]string{AnnotationAllowedUnsafeSysctls: intern(v)}
		})
	}
	t.Spec.Taints = n.Spec.Taints
	if len(n.Spec.Taints) > 0 && !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.TimeAdded != nil }) {
		// A taint with a time (unreachable, not-ready) is one node's: not shared.
		t.Spec.Taints = sharedTaints.get(taintsKey(n.Spec.Taints), func() []corev1.Taint {
			taints := slices.Clone(n.Spec.Taints)
			for i := range taints {
				taints[i].Key, taints[i].Value = intern(taints[i].Key), intern(taints[i].Value)
			}
			return taints
		})
	}
	t.Spec.Unschedulable = n.Spec.Unschedulable
	t.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion: intern(n.Status.NodeInfo.KubeletVersion),
		KernelVersion:  intern(n.Status.NodeInfo.KernelVersion),
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

// intern returns s stored once for the whole process: thousands of nodes repeat the
// same few hundred label keys and values (zone, instance type, pool, OS) and versions,
// and the decoder allocates each anew. unique holds each string only while a node
// uses it, so values that come and go (pools, versions) do not accumulate.
func intern(s string) string { return unique.Make(s).Value() }

// sharedAllowlistAnnotations and sharedTaints hold the annotations and taints the
// nodes of a pool have in common, so that each pool has one map or slice rather than
// one per node (a map, even of one entry, takes a few hundred bytes).
var (
	sharedAllowlistAnnotations = &nodeShared[map[string]string]{max: 4096}
	sharedTaints               = &nodeShared[[]corev1.Taint]{max: 4096}
)

// nodeShared is a bounded table of values shared between trimmed Nodes, keyed by
// their content; once full it stops adding, so a cluster with a value per node
// cannot grow it without limit (those nodes then get their own copy).
type nodeShared[T any] struct {
	mu     sync.Mutex
	values map[string]T
	max    int
}

// get returns the value stored for key, or stores and returns build().
func (s *nodeShared[T]) get(key string, build func() T) T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.values[key]; ok {
		return v
	}
	v := build()
	if s.values == nil {
		s.values = map[string]T{}
	}
	if len(s.values) < s.max {
		s.values[key] = v
	}
	return v
}

// taintsKey says which taints (without a time) are equal for sharing: every field,
// in order.
func taintsKey(taints []corev1.Taint) string {
	var b strings.Builder
	for _, t := range taints {
		b.WriteString(strconv.Quote(t.Key) + strconv.Quote(t.Value) + strconv.Quote(string(t.Effect)))
	}
	return b.String()
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
