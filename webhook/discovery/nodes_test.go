package discovery

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
)

// realisticNode is a Node as a managed cloud posts it: ~25 labels, a few annotations,
// images, conditions, capacity and managed fields — what an untrimmed cache would hold.
func realisticNode(i, pools int) *corev1.Node {
	pool := fmt.Sprintf("pool-%02d", i%pools)
	name := fmt.Sprintf("gke-cluster-%s-%08x", pool, i)
	labels := map[string]string{PoolLabelGKE: pool, corev1.LabelHostname: name, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64",
		corev1.LabelInstanceTypeStable: "n2-standard-8", corev1.LabelTopologyZone: "europe-west1-b", corev1.LabelTopologyRegion: "europe-west1"}
	for j := range 18 {
		labels[fmt.Sprintf("cloud.google.com/label-%02d", j)] = fmt.Sprintf("value-%d-%d", j, i%7)
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "0b6a2f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", ResourceVersion: "123456789", Labels: labels,
			Annotations: map[string]string{
				"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true",
				"container.googleapis.com/instance_id": "1234567890123456789", AnnotationAllowedUnsafeSysctls: "kernel.shm*,kernel.sem",
			},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: metav1.NewFieldsV1(`{"f:status":"` + strings.Repeat("x", 2031) + `"}`)}},
		},
		Spec: corev1.NodeSpec{PodCIDR: "10.0.0.0/24", ProviderID: "gce://project/zone/" + name,
			Taints: []corev1.Taint{{Key: "dedicated", Value: pool, Effect: corev1.TaintEffectNoSchedule}}},
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110")}
	n.Status.Capacity, n.Status.Allocatable = res, res
	for _, c := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure, "FrequentKubeletRestart", "KernelDeadlock"} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: c, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"})
	}
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}, {Type: corev1.NodeHostName, Address: name}}
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10250
	n.Status.NodeInfo = corev1.NodeSystemInfo{MachineID: "abcdef0123456789abcdef0123456789", SystemUUID: "abcdef01-2345-6789", BootID: fmt.Sprintf("boot-%d", i),
		KernelVersion: "6.8.0-1019-gke", OSImage: "Container-Optimized OS from Google", ContainerRuntimeVersion: "containerd://1.7.22",
		KubeletVersion: "v1.37.2-gke.1000", OperatingSystem: "linux", Architecture: "amd64"}
	for j := range 40 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{fmt.Sprintf("gcr.io/project/image-%d@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", j)}, SizeBytes: 123456789})
	}
	return n
}

// decodedNode is realisticNode as the informer receives it: decoded by client-go's
// deserializer, so that each of its strings is an allocation of its own, as in a real
// Node cache.
func decodedNode(tb testing.TB, i, pools int) *corev1.Node {
	tb.Helper()
	data, err := json.Marshal(realisticNode(i, pools))
	if err != nil {
		tb.Fatal(err)
	}
	obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, &schema.GroupVersionKind{Version: "v1", Kind: "Node"}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return obj.(*corev1.Node)
}

// liveHeap is the heap that survives a collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkTrimmedNodeCache builds 5,000 decoded Nodes in 50 pools through the
// informer's transform into an informer store, and reports the live heap the store
// keeps (trimmed-MiB, and trimmed-B/node) and, for comparison, what the untrimmed
// Nodes take (untrimmed-MiB). It also checks one regroup of all pools.
func BenchmarkTrimmedNodeCache(b *testing.B) {
	const nodes, pools = 5000, 50
	for b.Loop() {
		base := liveHeap()
		store := cache.NewStore(cache.MetaNamespaceKeyFunc)
		for i := range nodes {
			t, _ := TrimNode(decodedNode(b, i, pools))
			_ = store.Add(t)
		}
		trimmed := liveHeap() - base
		untrimmedStore := cache.NewStore(cache.MetaNamespaceKeyFunc)
		for i := range nodes {
			_ = untrimmedStore.Add(decodedNode(b, i, pools))
		}
		untrimmed := liveHeap() - base - trimmed
		list := store.List()
		ns := make([]*corev1.Node, len(list))
		for i, o := range list {
			ns[i] = o.(*corev1.Node)
		}
		got := Group(ns, GroupOptions{PoolLabel: PoolLabelGKE, Source: SourceAnnotation, Allowlist: AnnotationAllowlist})
		if len(got) != pools {
			b.Fatalf("grouped %d pools, want %d", len(got), pools)
		}
		b.ReportMetric(float64(trimmed)/(1<<20), "trimmed-MiB")
		b.ReportMetric(float64(trimmed)/nodes, "trimmed-B/node")
		b.ReportMetric(float64(untrimmed)/(1<<20), "untrimmed-MiB")
		runtime.KeepAlive(store)
		runtime.KeepAlive(untrimmedStore)
	}
}

// BenchmarkGroup regroups 5,000 trimmed Nodes in 50 pools, as every replica does on
// each change of its Node cache or of the shared result; -benchmem says what one
// regroup allocates, most of a reading replica's garbage at that size.
func BenchmarkGroup(b *testing.B) {
	const nodes, pools = 5000, 50
	ns := make([]*corev1.Node, nodes)
	for i := range ns {
		t, _ := TrimNode(realisticNode(i, pools))
		ns[i] = t.(*corev1.Node)
	}
	opts := GroupOptions{PoolLabel: PoolLabelGKE, Source: SourceAnnotation, Allowlist: AnnotationAllowlist}
	for b.Loop() {
		if got := Group(ns, opts); len(got) != pools {
			b.Fatalf("grouped %d pools, want %d", len(got), pools)
		}
	}
}

func TestTrimNode(t *testing.T) {
	const pools = 3
	trim := func(t *testing.T, n *corev1.Node) *corev1.Node {
		t.Helper()
		got, err := TrimNode(n)
		if err != nil {
			t.Fatal(err)
		}
		return got.(*corev1.Node)
	}

	t.Run("a trimmed node keeps what placement and discovery read, and nothing else", func(t *testing.T) {
		n := decodedNode(t, 4, pools)
		ready := n.Status.Conditions[0]
		want := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels,
				Annotations: map[string]string{AnnotationAllowedUnsafeSysctls: "kernel.shm*,kernel.sem"}},
			Spec: corev1.NodeSpec{Taints: n.Spec.Taints},
			Status: corev1.NodeStatus{
				NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-gke.1000", KernelVersion: "6.8.0-1019-gke", BootID: "boot-4"},
				DaemonEndpoints: n.Status.DaemonEndpoints,
				Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.4"}},
				Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready.Status, LastTransitionTime: ready.LastTransitionTime}},
			},
		}
		if got := trim(t, n); !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("trimmed node differs from what discovery reads:\n%s", diff.Diff(want, got))
		}
	})
	t.Run("each node keeps its own hostname label, equal to its name or not", func(t *testing.T) {
		a, b := decodedNode(t, 0, pools), decodedNode(t, pools, pools)
		b.Labels[corev1.LabelHostname] = "ip-10-0-0-3.ec2.internal"
		ta, tb := trim(t, a), trim(t, b)
		if got := ta.Labels[corev1.LabelHostname]; got != a.Name {
			t.Errorf("node %s has hostname label %q; want its name", a.Name, got)
		}
		if got := tb.Labels[corev1.LabelHostname]; got != "ip-10-0-0-3.ec2.internal" {
			t.Errorf("node %s has hostname label %q; want ip-10-0-0-3.ec2.internal", b.Name, got)
		}
	})
	t.Run("nodes of a pool share label strings, taints and the allowlist annotation", func(t *testing.T) {
		// Nodes 0 and 21 are in the same pool and have the same labels but their
		// hostname (realisticNode); each was decoded on its own.
		a, b := trim(t, decodedNode(t, 0, pools)), trim(t, decodedNode(t, 7*pools, pools))
		for k, v := range a.Labels {
			if k == corev1.LabelHostname {
				continue
			}
			kb := keyOf(b.Labels, k)
			if unsafe.StringData(kb) != unsafe.StringData(k) || unsafe.StringData(b.Labels[k]) != unsafe.StringData(v) {
				t.Errorf("label %s=%s is stored twice; want one copy for the pool", k, v)
			}
		}
		if &a.Spec.Taints[0] != &b.Spec.Taints[0] {
			t.Errorf("the pool's taints %v are stored twice; want one slice", a.Spec.Taints)
		}
		if reflect.ValueOf(a.Annotations).UnsafePointer() != reflect.ValueOf(b.Annotations).UnsafePointer() {
			t.Errorf("the allowlist annotation is stored twice; want one map")
		}
		if unsafe.StringData(a.Status.NodeInfo.KubeletVersion) != unsafe.StringData(b.Status.NodeInfo.KubeletVersion) {
			t.Errorf("the kubelet version is stored twice; want one copy")
		}
	})
	t.Run("nodes of different pools keep their own taints", func(t *testing.T) {
		a, b := trim(t, decodedNode(t, 0, pools)), trim(t, decodedNode(t, 1, pools))
		if a.Spec.Taints[0].Value == b.Spec.Taints[0].Value {
			t.Errorf("pools %s and %s have the same taint %v; want each pool's own", a.Labels[PoolLabelGKE], b.Labels[PoolLabelGKE], a.Spec.Taints)
		}
	})
	t.Run("a taint with a time stays the node's own", func(t *testing.T) {
		n := decodedNode(t, 0, pools)
		added := metav1.Now()
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added})
		if got := trim(t, n); !equality.Semantic.DeepEqual(got.Spec.Taints, n.Spec.Taints) {
			t.Errorf("taints %v; want %v", got.Spec.Taints, n.Spec.Taints)
		}
	})
	t.Run("a tombstone is passed through", func(t *testing.T) {
		tomb := cache.DeletedFinalStateUnknown{Key: "node-1"}
		if got, err := TrimNode(tomb); err != nil || got != tomb {
			t.Errorf("TrimNode(tombstone) = %v, %v; want it unchanged", got, err)
		}
	})
}

// keyOf is m's own copy of the key k.
func keyOf(m map[string]string, k string) string {
	for key := range m {
		if key == k {
			return key
		}
	}
	return ""
}
