package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

func TestWithoutWebhook(t *testing.T) {
	// The problem sysctl-placement solves, shown without it: the scheduler knows nothing
	// of kubelet allowlists, so a Deployment asking for IPC sysctls lands on the only
	// pool it tolerates — general — whose real kubelets reject its pods, and its
	// ReplicaSet keeps creating replacements that are rejected in turn.
	t.Run("without the webhook a deployment asking for kernel shmmax and sem has pods rejected with sysctl forbidden", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
			t.Fatal(err)
		}

		// A namespace that has not opted in, and an unchanged Deployment.
		ns := createNamespace(ctx, t, c, "shop")
		if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, postgres(3), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		rejected, err := c.WaitForPod(ctx, ns, "is Failed with reason SysctlForbidden", func(p *corev1.Pod) bool {
			return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "SysctlForbidden"
		})
		if err != nil {
			t.Fatal(err)
		}

		node, err := c.Client.CoreV1().Nodes().Get(ctx, rejected.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pool := node.Labels[cluster.PoolLabel]; pool != "general" {
			t.Errorf("pod %s was rejected on %s in pool %q, want the general pool", rejected.Name, node.Name, pool)
		}
		const message = `Pod was rejected: forbidden sysctl: "kernel.shmmax" not allowlisted`
		if rejected.Status.Message != message {
			t.Errorf("status.message = %q, want the kubelet's %q", rejected.Status.Message, message)
		}

		// The kubelet also says so in an Event, which is what `kubectl describe pod` shows.
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			events, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
				"involvedObject.name": rejected.Name, "reason": "SysctlForbidden",
			}.String()})
			if err != nil {
				return false, err
			}
			for _, e := range events.Items {
				if e.Type == corev1.EventTypeWarning && e.Source.Component == "kubelet" && strings.Contains(e.Message, "kernel.shmmax") {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Errorf("no Warning SysctlForbidden Event from the kubelet for pod %s: %v", rejected.Name, err)
		}

		// The loop: the ReplicaSet replaces each rejected pod with one that is rejected
		// again, so rejected pods pile up beyond the 3 replicas.
		var failed int
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			failed = 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodFailed && p.Status.Reason == "SysctlForbidden" {
					failed++
				}
			}
			return failed > 3, nil
		})
		if err != nil {
			t.Errorf("%d pods rejected with SysctlForbidden; want more than the 3 replicas, as the ReplicaSet keeps replacing them: %v", failed, err)
		}
	})
}

func createNamespace(ctx context.Context, t *testing.T, c *cluster.Cluster, name string) string {
	t.Helper()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// postgres is a Deployment as a user writes it: it asks for the IPC sysctls its
// database needs and knows nothing of node pools.
func postgres(replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": "postgres"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
						{Name: "kernel.shmmax", Value: "68719476736"},
						{Name: "kernel.sem", Value: "250 32000 100 128"},
					}},
					Containers: []corev1.Container{{Name: "postgres", Image: "postgres:17"}},
				},
			},
		},
	}
}
