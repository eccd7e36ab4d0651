package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// realIPCPool is a pool of one real node whose kubelet allows the IPC sysctls and
// net.core.somaxconn.
var realIPCPool = cluster.PoolSpec{
	Name:                 "real",
	Taints:               []corev1.Taint{{Key: "dedicated", Value: "real", Effect: corev1.TaintEffectNoSchedule}},
	AllowedUnsafeSysctls: []string{"kernel.shm*", "kernel.sem", "kernel.msg*", "net.core.somaxconn"},
}

// addRealNode adds a real pool, and skips the test when this machine's kernel cannot
// run containers (the reason is printed); any other failure fails it.
func addRealNode(ctx context.Context, t *testing.T, c *cluster.Cluster, spec cluster.PoolSpec) *cluster.Pool {
	t.Helper()
	started := time.Now()
	pool, err := c.AddRealNode(ctx, spec)
	if errors.Is(err, cluster.ErrRealNodeUnsupported) {
		t.Skipf("no real node on this machine: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("real node %s Ready in %s", pool.NodeNames[0], time.Since(started).Round(time.Millisecond))
	return pool
}

// readSysctls waits for the pod's sysctl-probe container to have printed a value for
// each name, and returns them by name.
func readSysctls(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, pod string, names []string) map[string]string {
	t.Helper()
	values := map[string]string{}
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		out, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = string(out)
		for line := range strings.Lines(last) {
			if name, value, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
				values[name] = value
			}
		}
		return len(values) == len(names), nil
	})
	if err != nil {
		t.Fatalf("the container of pod %s/%s printed no value for each of %v: %v (last: %s)", ns, pod, names, err, last)
	}
	return values
}

// The last step users take by hand: in the container, the kernel parameters read back
// as the pod asked, and a parameter the kubelet does not allow is refused by the
// kubelet itself.
func TestRealNodeSetsAllowedSysctls(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	pool := addRealNode(ctx, t, c, realIPCPool)

	want := map[string]string{
		"kernel.shmmax":      "68719476736",
		"kernel.sem":         "250 32000 100 1024",
		"net.core.somaxconn": "2048",
	}
	var sysctls []corev1.Sysctl
	var names []string
	for name, value := range want {
		sysctls = append(sysctls, corev1.Sysctl{Name: name, Value: value})
		names = append(names, name)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector:    pool.NodeSelector(),
			Tolerations:     []corev1.Toleration{{Key: "dedicated", Value: "real", Effect: corev1.TaintEffectNoSchedule}},
			SecurityContext: &corev1.PodSecurityContext{Sysctls: sysctls},
			Containers: []corev1.Container{{
				Name: "probe", Image: cluster.ProbeImage, ImagePullPolicy: corev1.PullNever, Args: names,
				SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](65532), RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false)},
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := readSysctls(ctx, t, c, "default", "probe", names)
	for name, value := range want {
		if got[name] != value {
			t.Errorf("inside the container %s = %q, want %q as the pod asked", name, got[name], value)
		}
	}

	// A sysctl the kubelet does not allow: the real kubelet rejects the pod.
	forbidden := pod.DeepCopy()
	forbidden.Name = "forbidden"
	forbidden.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "net.ipv4.tcp_max_syn_backlog", Value: "4096"}}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, forbidden, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rejected, err := c.WaitForPod(ctx, "default", "the real kubelet rejected", func(p *corev1.Pod) bool {
		return p.Name == "forbidden" && p.Status.Phase == corev1.PodFailed
	})
	if err != nil {
		t.Fatal(err)
	}
	if rejected.Status.Reason != "SysctlForbidden" {
		t.Errorf("the real kubelet failed the pod with reason %q (%s), want SysctlForbidden", rejected.Status.Reason, rejected.Status.Message)
	}
}

func TestRealNode(t *testing.T) {
	// The user flow end to end on a real node: a Deployment that asks for the IPC
	// sysctls and net.core.somaxconn and knows nothing of pools, in an opted-in namespace,
	// is placed by the webhook on the only pool whose kubelet allows them — the real
	// node's — and inside its container the kernel shows the values it asked for.
	t.Run("an opted in deployment runs on the real node with its sysctls", func(t *testing.T) {
		env := startPlacementEnvWithPools(t, cluster.WebhookOptions{}, func(ctx context.Context, c *cluster.Cluster) ([]*cluster.Pool, error) {
			realPool := addRealNode(ctx, t, c, realIPCPool)
			general, err := c.AddPool(ctx, cluster.PoolSpec{Name: "general", Nodes: 1})
			return []*cluster.Pool{realPool, general}, err
		})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "shop", nil)

		want := map[string]string{"kernel.shmmax": "68719476736", "kernel.sem": "250 32000 100 128", "net.core.somaxconn": "1024"}
		names := []string{"kernel.shmmax", "kernel.sem", "net.core.somaxconn"}
		podLabels := map[string]string{"app": "db"}
		deployment := probeDeployment("db", podLabels, names, want)
		if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, deployment, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods := env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(podLabels), 1)
		if pool := env.poolOf(ctx, t, &pods[0]); pool != realIPCPool.Name {
			t.Fatalf("pod %s runs in pool %q, want the real node's pool %q", pods[0].Name, pool, realIPCPool.Name)
		}
		got := readSysctls(ctx, t, env.Cluster, ns, pods[0].Name, names)
		for name, value := range want {
			if got[name] != value {
				t.Errorf("inside the container %s = %q, want %q as the Deployment asked", name, got[name], value)
			}
		}
	})

	// What users live with today, on a real kubelet: the same Deployment in a namespace
	// that is not opted in is scheduled on the only untainted node, whose real kubelet
	// refuses it with SysctlForbidden; opted in, the webhook sends it to the tainted pool
	// whose kubelets allow its sysctls.
	t.Run("a not opted in deployment is refused by the real kubelet", func(t *testing.T) {
		ipc := cluster.PoolSpec{Name: "ipc", Nodes: 1, Taints: realIPCPool.Taints, AllowedUnsafeSysctls: realIPCPool.AllowedUnsafeSysctls}
		env := startPlacementEnvWithPools(t, cluster.WebhookOptions{}, func(ctx context.Context, c *cluster.Cluster) ([]*cluster.Pool, error) {
			narrow := addRealNode(ctx, t, c, realNarrowPool)
			ipcPool, err := c.AddPool(ctx, ipc)
			return []*cluster.Pool{narrow, ipcPool}, err
		})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		names := []string{"kernel.shmmax", "kernel.sem"}
		want := map[string]string{"kernel.shmmax": "68719476736", "kernel.sem": "250 32000 100 128"}
		podLabels := map[string]string{"app": "db"}

		plain := "plain"
		if _, err := env.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: plain}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.client.AppsV1().Deployments(plain).Create(ctx, probeDeployment("db", podLabels, names, want), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rejected, err := env.WaitForPod(ctx, plain, "rejected by a kubelet", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed
		})
		if err != nil {
			t.Fatal(err)
		}
		if rejected.Spec.NodeName != realNarrowPool.Name+"-1" || rejected.Status.Reason != "SysctlForbidden" {
			t.Errorf("not opted in, pod %s failed on %q with reason %q (%s); want SysctlForbidden from the real kubelet of %s-1",
				rejected.Name, rejected.Spec.NodeName, rejected.Status.Reason, rejected.Status.Message, realNarrowPool.Name)
		}

		ns := optedInNamespace(ctx, t, env.Cluster, "shop", nil)
		if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, probeDeployment("db", podLabels, names, want), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods := env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(podLabels), 1)
		if pool := env.poolOf(ctx, t, &pods[0]); pool != ipc.Name {
			t.Errorf("opted in, pod %s runs in pool %q, want %q, whose kubelets allow its sysctls", pods[0].Name, pool, ipc.Name)
		}
	})
}

// probeDeployment is a Deployment of one sysctl-probe replica asking for the sysctls
// in want and printing names: a workload that knows nothing of pools.
func probeDeployment(name string, podLabels map[string]string, names []string, want map[string]string) *appsv1.Deployment {
	var sysctls []corev1.Sysctl
	for _, n := range names {
		sysctls = append(sysctls, corev1.Sysctl{Name: n, Value: want[n]})
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{Sysctls: sysctls},
					Containers: []corev1.Container{{
						// IfNotPresent: real nodes have the image imported; a hollow
						// kubelet's fake runtime has no image and "pulls" it.
						Name: name, Image: cluster.ProbeImage, ImagePullPolicy: corev1.PullIfNotPresent, Args: names,
						SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](65532), RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false)},
					}},
					TerminationGracePeriodSeconds: ptr.To[int64](1),
				},
			},
		},
	}
}

// realNarrowPool is a pool of one real node, untainted, whose kubelet allows only
// net.core.somaxconn: where the scheduler sends a pod that no one placed.
var realNarrowPool = cluster.PoolSpec{Name: "narrow", AllowedUnsafeSysctls: []string{"net.core.somaxconn"}}
