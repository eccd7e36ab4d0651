package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// shippedImage is the image name the overlays name; the release pins it by digest.
const shippedImage = "ghcr.io/sysctl-placement/sysctl-placement:v0.1.0"

func TestRealNodeWebhook(t *testing.T) {
	// The webhook as a cluster runs it: the self-signed overlay applied unchanged but for
	// the image, which is the one `go tool task image` built, imported into real nodes'
	// runtime. Two real nodes are the shipped example config's pools: default-pool, where
	// the webhook's pods run and become Ready by their own probes, and db-ipc, tainted,
	// whose kubelet allows the IPC sysctls. The certs Job makes the TLS Secret and the
	// caBundle in the cluster; the API server sends admissions through the Service to the
	// pods; a Deployment that knows nothing of pools is placed on db-ipc, and inside its
	// container the kernel shows what it asked for.
	t.Run("the webhook runs as its deployments pods on a real node", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{InClusterPods: true})
		ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
		defer cancel()
		image := addShippedPoolsAsRealNodes(ctx, t, c)

		kubectl := kubectlAsAdmin(ctx, t, c)
		rendered := kubectl(nil, "kustomize", filepath.Join(cluster.RepoRoot(), "deploy", "overlays", "self-signed"))
		if !strings.Contains(rendered, "image: "+shippedImage) {
			t.Fatalf("the self-signed overlay does not name %s; this test swaps it for the built image", shippedImage)
		}
		rendered = strings.ReplaceAll(rendered, "image: "+shippedImage, "image: "+image.Ref)
		installed := time.Now()
		kubectl([]byte(rendered), "apply", "--server-side", "--field-manager=e2e", "-f", "-")

		var last string
		err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			d, err := c.Client.AppsV1().Deployments("sysctl-placement").Get(ctx, "sysctl-placement", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			last = describePods(ctx, c, "sysctl-placement")
			return d.Status.ReadyReplicas == *d.Spec.Replicas && d.Status.UpdatedReplicas == *d.Spec.Replicas, nil
		})
		if err != nil {
			t.Fatalf("the webhook's Deployment never had every replica Ready: %v\n%s", err, last)
		}
		t.Logf("installed and Ready in %s", time.Since(installed).Round(time.Millisecond))
		pods, err := c.Client.CoreV1().Pods("sysctl-placement").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=webhook"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != "default-pool-1" || p.Spec.Containers[0].Image != image.Ref {
				t.Errorf("webhook pod %s runs %s on %q; want the built image on the real node default-pool-1", p.Name, p.Spec.Containers[0].Image, p.Spec.NodeName)
			}
		}

		placedOnARealNodeWithItsSysctls(ctx, t, c)
	})
}

// addShippedPoolsAsRealNodes adds two real nodes that are the shipped example
// config's pools: default-pool, where the webhook's pods run, and db-ipc, tainted,
// whose kubelet allows the IPC sysctls; and imports the release image into both. On a
// machine that cannot run a real node the test skips before it looks for the image.
func addShippedPoolsAsRealNodes(ctx context.Context, t *testing.T, c *cluster.Cluster) cluster.ReleaseImage {
	t.Helper()
	addRealNode(ctx, t, c, cluster.PoolSpec{Name: "default-pool", Labels: map[string]string{gkePool: "default-pool"}})
	image, err := cluster.BuiltReleaseImage()
	if err != nil {
		t.Fatal(err)
	}
	addRealNode(ctx, t, c, cluster.PoolSpec{
		Name:                 "db-ipc",
		Labels:               map[string]string{gkePool: "db-ipc"},
		Taints:               []corev1.Taint{{Key: "dedicated", Value: "ipc", Effect: corev1.TaintEffectNoSchedule}},
		AllowedUnsafeSysctls: []string{"kernel.shm*", "kernel.sem", "kernel.msg*"},
	})
	if err := c.ImportImage(ctx, image.Archive, image.Name); err != nil {
		t.Fatal(err)
	}
	return image
}

// gkePool is the node label the shipped example config selects pools by.
const gkePool = "cloud.google.com/gke-nodepool"

// placedOnARealNodeWithItsSysctls creates, in a new opted-in namespace, a Deployment
// that asks for kernel.shmmax and kernel.sem and knows nothing of pools, and checks
// that the webhook placed it on db-ipc-1, where its container reads them back.
func placedOnARealNodeWithItsSysctls(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	t.Helper()
	ns := optedInNamespace(ctx, t, c, "shop", nil)
	names := []string{"kernel.shmmax", "kernel.sem"}
	want := map[string]string{"kernel.shmmax": "68719476736", "kernel.sem": "250 32000 100 128"}
	podLabels := map[string]string{"app": "db"}
	// The namespace's default ServiceAccount, which pods need, appears when its
	// controller gets to it; the ReplicaSet controller retries until then.
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, probeDeployment("db", podLabels, names, want), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running, err := c.WaitForPod(ctx, ns, "runs", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodFailed
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, describePods(ctx, c, ns))
	}
	if running.Status.Phase != corev1.PodRunning || running.Spec.NodeName != "db-ipc-1" || running.Spec.NodeSelector[gkePool] != "db-ipc" {
		t.Fatalf("pod %s is %s on %q (reason %q, nodeSelector %v); want it placed by the webhook's pods on db-ipc-1 and running",
			running.Name, running.Status.Phase, running.Spec.NodeName, running.Status.Reason, running.Spec.NodeSelector)
	}
	got := readSysctls(ctx, t, c, ns, running.Name, names)
	for name, value := range want {
		if got[name] != value {
			t.Errorf("inside the container %s = %q, want %q as the Deployment asked", name, got[name], value)
		}
	}
}

// describePods says, for each pod of a namespace, where it runs, its phase and its
// containers' states: what a failed wait needs to show.
func describePods(ctx context.Context, c *cluster.Cluster, ns string) string {
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s on %q: %s %s %s\n", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Reason, p.Status.Message)
		for _, cond := range p.Status.Conditions {
			if cond.Status != corev1.ConditionTrue {
				fmt.Fprintf(&b, "  %s=%s %s %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
			}
		}
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			fmt.Fprintf(&b, "  container %s ready=%v restarts=%d state=%+v last=%+v\n", s.Name, s.Ready, s.RestartCount, s.State, s.LastTerminationState)
		}
	}
	return b.String()
}
