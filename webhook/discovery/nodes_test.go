package discovery

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: metav1.NewFieldsV1(string(make([]byte, 2048)))}},
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

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkTrimmedNodeCache builds 5,000 Nodes in 50 pools through the informer's
// transform into an informer store, and reports the heap the store keeps
// (trimmed-MiB) and, for comparison, what the untrimmed Nodes take (untrimmed-MiB).
// It also reports how long one regroup of all pools takes.
func BenchmarkTrimmedNodeCache(b *testing.B) {
	const nodes, pools = 5000, 50
	for b.Loop() {
		base := heapInUse()
		store := cache.NewStore(cache.MetaNamespaceKeyFunc)
		for i := range nodes {
			t, _ := TrimNode(realisticNode(i, pools))
			_ = store.Add(t)
		}
		trimmed := heapInUse() - base
		untrimmedStore := cache.NewStore(cache.MetaNamespaceKeyFunc)
		for i := range nodes {
			_ = untrimmedStore.Add(realisticNode(i, pools))
		}
		untrimmed := heapInUse() - base - trimmed
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
