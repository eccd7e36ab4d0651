package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// TestHarness checks the control plane and the pools' hollow kubelets on their own, so
// that a failing end-to-end test points at the webhook, not at the harness.
func TestHarness(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
		t.Fatal(err)
	}

	t.Run("the pools' nodes are Ready, schedulable and describe their kubelet", func(t *testing.T) {
		nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: cluster.PoolLabel + "=ipc"})
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != 2 {
			t.Fatalf("the ipc pool has %d nodes, want 2", len(nodes.Items))
		}
		for _, n := range nodes.Items {
			if n.Labels[corev1.LabelHostname] != n.Name {
				t.Errorf("%s: hostname label %q", n.Name, n.Labels[corev1.LabelHostname])
			}
			want := corev1.Taint{Key: "dedicated", Value: "ipc", Effect: corev1.TaintEffectNoSchedule}
			if len(n.Spec.Taints) != 1 || !n.Spec.Taints[0].MatchTaint(&want) {
				t.Errorf("%s: taints %v, want only %v (the not-ready taint lifted)", n.Name, n.Spec.Taints, want)
			}
			if !nodeReady(&n) {
				t.Errorf("%s is not Ready: %v", n.Name, n.Status.Conditions)
			}
			if n.Status.NodeInfo.KubeletVersion != cluster.DefaultKubeletVersion || n.Status.NodeInfo.KernelVersion != cluster.DefaultKernelVersion {
				t.Errorf("%s: nodeInfo %+v", n.Name, n.Status.NodeInfo)
			}
		}
	})

	t.Run("a plain pod without sysctls is scheduled on the untainted pool and runs", func(t *testing.T) {
		pod, err := c.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "plain"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		running := waitRunning(ctx, t, c, pod)
		if pool := poolOf(ctx, t, c, running.Spec.NodeName); pool != "general" {
			t.Errorf("ran on %s in pool %q, want the general pool (the others are tainted)", running.Spec.NodeName, pool)
		}
		if len(running.Status.ContainerStatuses) != 1 || running.Status.ContainerStatuses[0].State.Running == nil {
			t.Errorf("container statuses %+v, want app running", running.Status.ContainerStatuses)
		}
	})

	t.Run("a pod placed by hand on the ipc pool with kernel.shmmax runs there", func(t *testing.T) {
		pod, err := c.Client.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "shm"},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{cluster.PoolLabel: "ipc"},
				Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ipc", Effect: corev1.TaintEffectNoSchedule}},
				SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
					{Name: "kernel.shmmax", Value: "68719476736"},
				}},
				Containers: []corev1.Container{{Name: "db", Image: "postgres:17"}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		running := waitRunning(ctx, t, c, pod)
		if pool := poolOf(ctx, t, c, running.Spec.NodeName); pool != "ipc" {
			t.Errorf("ran on %s in pool %q, want ipc", running.Spec.NodeName, pool)
		}
	})

	t.Run("each pool's kubelets admit exactly what their allowlist allows", func(t *testing.T) {
		tests := []struct {
			name    string
			pool    string
			sysctls []string
			want    string // "" when admitted, else the rejection message
		}{
			{name: "the general pool admits a pod without sysctls", pool: "general"},
			{name: "the general pool admits a safe sysctl", pool: "general", sysctls: []string{"net.ipv4.tcp_syncookies"}},
			{name: "the general pool rejects kernel.shmmax", pool: "general", sysctls: []string{"kernel.shmmax", "kernel.sem"},
				want: `Pod was rejected: forbidden sysctl: "kernel.shmmax" not allowlisted`},
			{name: "the ipc pool admits kernel.shmmax and kernel.sem", pool: "ipc", sysctls: []string{"kernel.shmmax", "kernel.sem"}},
			{name: "the ipc pool rejects net.core.somaxconn", pool: "ipc", sysctls: []string{"net.core.somaxconn"},
				want: `Pod was rejected: forbidden sysctl: "net.core.somaxconn" not allowlisted`},
			{name: "the net pool admits net.core.somaxconn and a tcp_ sysctl in slash form", pool: "net",
				sysctls: []string{"net.core.somaxconn", "net/ipv4/tcp_max_syn_backlog"}},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("admit-%d", i)},
					Spec: corev1.PodSpec{
						NodeSelector:    map[string]string{cluster.PoolLabel: tt.pool},
						Tolerations:     []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}},
						SecurityContext: &corev1.PodSecurityContext{},
						Containers:      []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
					},
				}
				for _, s := range tt.sysctls {
					pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: s, Value: "1"})
				}
				if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
				got, err := c.WaitForPod(ctx, "default", "is "+pod.Name+" and Running or Failed", func(p *corev1.Pod) bool {
					return p.Name == pod.Name && (p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodFailed)
				})
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case tt.want == "" && got.Status.Phase != corev1.PodRunning:
					t.Errorf("rejected: %s: %s", got.Status.Reason, got.Status.Message)
				case tt.want != "" && got.Status.Phase != corev1.PodFailed:
					t.Errorf("admitted, want rejection %q", tt.want)
				case tt.want != "" && (got.Status.Reason != "SysctlForbidden" || got.Status.Message != tt.want):
					t.Errorf("rejected with %s: %q, want SysctlForbidden: %q", got.Status.Reason, got.Status.Message, tt.want)
				}
			})
		}
	})

	t.Run("a kubelet whose allowlist has a sysctl that is not namespaced refuses to start", func(t *testing.T) {
		_, err := c.AddPool(ctx, cluster.PoolSpec{Name: "bad", Nodes: 1, AllowedUnsafeSysctls: []string{"kernel.panic"}})
		if err == nil || !strings.Contains(err.Error(), "not known to be namespaced") {
			t.Fatalf("adding a pool whose kubelets allow kernel.panic: %v; want the kubelet's refusal (not known to be namespaced)", err)
		}
	})

	t.Run("a pool's kubelets report the kubelet and kernel versions the pool says", func(t *testing.T) {
		pool, err := c.AddPool(ctx, cluster.PoolSpec{Name: "old", Nodes: 1, KubeletVersion: "v1.30.4", KernelVersion: "5.4.0-1100-aws"})
		if err != nil {
			t.Fatal(err)
		}
		node, err := c.Client.CoreV1().Nodes().Get(ctx, pool.NodeNames[0], metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if info := node.Status.NodeInfo; info.KubeletVersion != "v1.30.4" || info.KernelVersion != "5.4.0-1100-aws" {
			t.Errorf("nodeInfo reports kubelet %q and kernel %q, want v1.30.4 and 5.4.0-1100-aws", info.KubeletVersion, info.KernelVersion)
		}
	})

	t.Run("a deleted pod goes away, as its kubelet confirms the deletion", func(t *testing.T) {
		pods := c.Client.CoreV1().Pods("default")
		if err := pods.Delete(ctx, "plain", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			_, err := pods.Get(ctx, "plain", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("pod plain was not removed: %v", err)
		}
	})
}

func waitRunning(ctx context.Context, t *testing.T, c *cluster.Cluster, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	running, err := c.WaitForPod(ctx, pod.Namespace, "is "+pod.Name+" and Running and Ready", func(p *corev1.Pod) bool {
		return p.Name == pod.Name && p.Status.Phase == corev1.PodRunning && podReady(p)
	})
	if err != nil {
		t.Fatal(err)
	}
	return running
}

func poolOf(ctx context.Context, t *testing.T, c *cluster.Cluster, nodeName string) string {
	t.Helper()
	node, err := c.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return node.Labels[cluster.PoolLabel]
}

func nodeReady(n *corev1.Node) bool {
	return slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
		return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	})
}

func podReady(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}
