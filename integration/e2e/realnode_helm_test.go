package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// The chart installed as most teams install it: Helm v4's own CLI, `helm install
// --wait --rollback-on-failure`, on real nodes that are the chart's default pools, with
// the image `go tool task image` built. --wait holds the install until every webhook
// pod is Ready, which it can only be once the TLS Secret exists: the chart makes it in
// a pre-install hook (a post-install hook would run only after the wait, and the
// install would hang until its timeout). Installed, the webhook places a Deployment
// on db-ipc; uninstalled, no webhook configuration is left to refuse pods.
func TestHelmInstallWithWaitSucceedsOnRealNodesAndUninstallLeavesNoWebhook(t *testing.T) {
	image, err := cluster.BuiltReleaseImage()
	if err != nil {
		t.Fatal(err)
	}
	helmBin, err := cluster.Helm.Path()
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.StartForTest(t, cluster.Options{InClusterPods: true})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	addShippedPoolsAsRealNodes(ctx, t, c, image)

	home := t.TempDir()
	helm := func(args ...string) {
		t.Helper()
		started := time.Now()
		cmd := exec.CommandContext(ctx, helmBin, append(args, "--kubeconfig", c.Kubeconfig)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s: %v\n%s\nthe webhook's namespace:\n%s", strings.Join(args, " "), err, out, describePods(ctx, c, "sysctl-placement"))
		}
		t.Logf("helm %s took %s", args[0], time.Since(started).Round(time.Millisecond))
	}
	_, digest, _ := strings.Cut(image.Ref, "@")
	helm("install", "sysctl-placement", filepath.Join(cluster.RepoRoot(), "deploy", "charts", "sysctl-placement"),
		"-n", "sysctl-placement", "--create-namespace", "--wait", "--rollback-on-failure", "--timeout", "3m",
		"--set", "image.repository="+image.Name, "--set", "image.digest="+digest)
	placedOnARealNodeWithItsSysctls(ctx, t, c)

	helm("uninstall", "sysctl-placement", "-n", "sysctl-placement", "--wait", "--timeout", "2m")
	adm := c.Client.AdmissionregistrationV1()
	if _, err := adm.MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{}); err == nil {
		t.Error("after helm uninstall the MutatingWebhookConfiguration sysctl-placement is still there")
	}
	if _, err := adm.ValidatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{}); err == nil {
		t.Error("after helm uninstall the ValidatingWebhookConfiguration sysctl-placement is still there")
	}
	// The namespace is still labelled as opted in; with the webhook gone its pods are
	// admitted as they would be without it.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "after-uninstall-"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "68719476736"}}},
			Containers:      []corev1.Container{{Name: "c", Image: cluster.ProbeImage}},
		},
	}
	if _, err := c.Client.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Errorf("after helm uninstall a pod in the formerly opted-in namespace is refused: %v", err)
	}
}
