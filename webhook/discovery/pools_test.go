package discovery

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

const testLabel = PoolLabelGKE

// node builds a Node of pool with the given versions, taints and annotation allowlist.
func node(name, pool string, opts ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if pool != "" {
		n.Labels[testLabel] = pool
	}
	n.Status.NodeInfo.KubeletVersion = "v1.37.2"
	n.Status.NodeInfo.KernelVersion = "6.8.0-1019-gke"
	for _, o := range opts {
		o(n)
	}
	return n
}

func allows(list string) func(*corev1.Node) {
	return func(n *corev1.Node) {
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[AnnotationAllowedUnsafeSysctls] = list
	}
}

func taint(key, value string, effect corev1.TaintEffect) func(*corev1.Node) {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: effect})
	}
}

func versions(kubelet, kernel string) func(*corev1.Node) {
	return func(n *corev1.Node) {
		n.Status.NodeInfo.KubeletVersion, n.Status.NodeInfo.KernelVersion = kubelet, kernel
	}
}

func groupByAnnotation(nodes ...*corev1.Node) []PoolStatus {
	return Group(nodes, GroupOptions{PoolLabel: testLabel, Source: SourceAnnotation, Allowlist: AnnotationAllowlist})
}

func problemKinds(st PoolStatus) []ProblemKind {
	var out []ProblemKind
	for _, p := range st.Problems {
		out = append(out, p.Kind)
	}
	return out
}

func TestGroup(t *testing.T) {
	t.Run("nodes are grouped by the pool label and nodes without it are in no pool", func(t *testing.T) {
		got := groupByAnnotation(node("a1", "ipc", allows("kernel.sem")), node("b1", "net"), node("a2", "ipc", allows("kernel.sem")), node("x", ""))
		if len(got) != 2 || got[0].Pool.Name != "ipc" || got[1].Pool.Name != "net" {
			t.Fatalf("pools = %+v, want ipc and net", got)
		}
		if got[0].Nodes != 2 || !reflect.DeepEqual(got[0].Pool.NodeSelector, map[string]string{testLabel: "ipc"}) {
			t.Errorf("ipc = %+v, want 2 nodes selected by %s=ipc", got[0], testLabel)
		}
		if got[0].Source != SourceAnnotation || len(got[0].Problems) != 0 {
			t.Errorf("ipc source %s problems %v, want annotation and none", got[0].Source, got[0].Problems)
		}
	})
	t.Run("nodes that disagree leave the pool with the intersection and a problem", func(t *testing.T) {
		got := groupByAnnotation(
			node("a1", "ipc", allows("kernel.shm*,kernel.sem,kernel.msg*")),
			node("a2", "ipc", allows("kernel.shmmax,kernel.sem,kernel.msgmax")),
			node("a3", "ipc", allows("kernel.shm*,kernel.sem,kernel.msg*")))[0]
		if want := []string{"kernel.msgmax", "kernel.sem", "kernel.shmmax"}; !reflect.DeepEqual(got.Pool.AllowedUnsafeSysctls, want) {
			t.Errorf("allowlist = %v, want %v", got.Pool.AllowedUnsafeSysctls, want)
		}
		if !reflect.DeepEqual(problemKinds(got), []ProblemKind{ProblemNodesDisagree}) || !strings.Contains(got.Problems[0].Detail, "a2") {
			t.Errorf("problems = %v, want NodesDisagree naming a2", got.Problems)
		}
	})
	t.Run("the lowest kubelet and kernel versions of the pool decide its safe set", func(t *testing.T) {
		got := groupByAnnotation(
			node("a1", "p", versions("v1.37.2", "6.8.0-1019-gke")),
			node("a2", "p", versions("v1.31.4-gke.100", "6.8.0")),
			node("a3", "p", versions("v1.33.0", "5.15.0-1050-azure")))[0]
		if got.Pool.KubeletVersion != "v1.31.4-gke.100" || got.Pool.KernelVersion != "5.15.0-1050-azure" {
			t.Errorf("versions = %s / %s, want v1.31.4-gke.100 / 5.15.0-1050-azure", got.Pool.KubeletVersion, got.Pool.KernelVersion)
		}
	})
	t.Run("an unparsable version is reported and the others decide", func(t *testing.T) {
		got := groupByAnnotation(node("a1", "p", versions("v1.36.0", "6.8.0")), node("a2", "p", versions("garbage", "6.1.0")))[0]
		if got.Pool.KubeletVersion != "v1.36.0" || !reflect.DeepEqual(problemKinds(got), []ProblemKind{ProblemInvalidVersion}) {
			t.Errorf("pool = %+v, want kubelet v1.36.0 and InvalidVersion", got)
		}
	})
	t.Run("only taints common to every node are the pool's; a partial one is reported", func(t *testing.T) {
		got := groupByAnnotation(
			node("a1", "p", taint("dedicated", "ipc", corev1.TaintEffectNoSchedule), taint("gpu", "", corev1.TaintEffectNoExecute), taint("soft", "", corev1.TaintEffectPreferNoSchedule)),
			node("a2", "p", taint("dedicated", "ipc", corev1.TaintEffectNoSchedule), taint(corev1.TaintNodeUnschedulable, "", corev1.TaintEffectNoSchedule)))[0]
		want := []corev1.Taint{{Key: "dedicated", Value: "ipc", Effect: corev1.TaintEffectNoSchedule}}
		if !reflect.DeepEqual(got.Pool.Taints, want) {
			t.Errorf("taints = %v, want %v", got.Pool.Taints, want)
		}
		if !reflect.DeepEqual(problemKinds(got), []ProblemKind{ProblemPartialTaint}) || !strings.Contains(got.Problems[0].Detail, "gpu") {
			t.Errorf("problems = %v, want one PartialTaint for gpu (lifecycle taints ignored)", got.Problems)
		}
	})
	t.Run("invalid patterns are reported and not used", func(t *testing.T) {
		got := groupByAnnotation(node("a1", "p", allows("kernel.sem, vm.swappiness ,Kernel.X")))[0]
		if !reflect.DeepEqual(got.Pool.AllowedUnsafeSysctls, []string{"kernel.sem"}) {
			t.Errorf("allowlist = %v, want [kernel.sem]", got.Pool.AllowedUnsafeSysctls)
		}
		if !reflect.DeepEqual(problemKinds(got), []ProblemKind{ProblemInvalidPattern, ProblemInvalidPattern}) {
			t.Errorf("problems = %v, want two InvalidPattern", got.Problems)
		}
	})
	t.Run("every node sharing an invalid pattern or version is named", func(t *testing.T) {
		got := groupByAnnotation(
			node("a1", "p", allows("kernel.sem,vm.swappiness"), versions("garbage", "6.8.0")),
			node("a2", "p", allows("kernel.sem,vm.swappiness"), versions("garbage", "6.8.0")),
			node("a3", "p", allows("kernel.sem,vm.swappiness"), versions("v1.36.0", "6.8.0")))[0]
		if !reflect.DeepEqual(problemKinds(got), []ProblemKind{ProblemInvalidPattern, ProblemInvalidVersion}) {
			t.Fatalf("problems = %v, want InvalidPattern and InvalidVersion", got.Problems)
		}
		if d := got.Problems[1].Detail; !strings.Contains(d, "a1") || !strings.Contains(d, "a2") || strings.Contains(d, "a3") {
			t.Errorf("InvalidVersion = %q, want a1 and a2 named, not a3", d)
		}
		if d := got.Problems[0].Detail; !strings.Contains(d, "a1, a2, a3") {
			t.Errorf("InvalidPattern = %q, want a1, a2, a3 named", d)
		}
	})
	t.Run("an unreachable kubelet with a last known allowlist keeps it and is reported", func(t *testing.T) {
		al := map[string]Allowlist{
			"a1": {Known: true, Patterns: []string{"kernel.sem"}},
			"a2": {Known: true, Patterns: []string{"kernel.sem"}, Err: errors.New("connection refused")},
		}
		got := Group([]*corev1.Node{node("a1", "p"), node("a2", "p")}, GroupOptions{PoolLabel: testLabel, Source: SourceConfigz,
			Allowlist: func(n *corev1.Node) Allowlist { return al[n.Name] }})[0]
		if !reflect.DeepEqual(got.Pool.AllowedUnsafeSysctls, []string{"kernel.sem"}) || !reflect.DeepEqual(problemKinds(got), []ProblemKind{ProblemKubeletUnreachable}) {
			t.Errorf("pool = %+v, want [kernel.sem] and KubeletUnreachable", got)
		}
	})
	t.Run("a label value that is no valid pool name is made one", func(t *testing.T) {
		got := groupByAnnotation(node("a1", "My_Pool"))[0]
		if got.Pool.Name != "my-pool" || got.Pool.NodeSelector[testLabel] != "My_Pool" || len(got.Problems) != 0 {
			t.Errorf("pool = %+v, want name my-pool selecting My_Pool", got)
		}
	})
}

func TestIntersect(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b []string
		want []string
	}{
		{"equal lists stay", []string{"kernel.sem", "kernel.shm*"}, []string{"kernel.sem", "kernel.shm*"}, []string{"kernel.sem", "kernel.shm*"}},
		{"a prefix and a name under it give the name", []string{"kernel.shm*"}, []string{"kernel.shmmax"}, []string{"kernel.shmmax"}},
		{"two nested prefixes give the narrower", []string{"net.*"}, []string{"net.ipv4.tcp_*"}, []string{"net.ipv4.tcp_*"}},
		{"disjoint lists give nothing", []string{"kernel.sem"}, []string{"net.core.somaxconn"}, nil},
		{"an empty list gives nothing", nil, []string{"kernel.sem"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Intersect(tc.a, tc.b); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Intersect(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

type recordingSink struct{ last *scheduling.Compiled }

func (s *recordingSink) Set(c *scheduling.Compiled) { s.last = c }
