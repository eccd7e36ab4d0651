package e2e

import (
	"bytes"
	"context"
	"fmt"
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
	chart := filepath.Join(cluster.RepoRoot(), "deploy", "charts", "sysctl-placement")
	imageValues := []string{"--set", "image.repository=" + image.Name, "--set", "image.digest=" + digest}
	helm(append([]string{"install", "sysctl-placement", chart, "-n", "sysctl-placement", "--create-namespace",
		"--wait", "--rollback-on-failure", "--timeout", "3m"}, imageValues...)...)
	placedOnARealNodeWithItsSysctls(ctx, t, c)

	// An upgrade that rolls the webhook's pods, under a steady stream of pods to
	// admit: not one may be refused or left unplaced, and the certificates stay.
	tlsBefore, caBefore := servingCertificates(ctx, t, c)
	stream := startAdmissionStream(ctx, c, "shop")
	helm(append([]string{"upgrade", "sysctl-placement", chart, "-n", "sysctl-placement",
		"--wait", "--rollback-on-failure", "--timeout", "3m", "--set", "resources.requests.cpu=60m"}, imageValues...)...)
	admitted, failures := stream.stop()
	t.Logf("during the upgrade %d pods were admitted, %d failed", admitted, len(failures))
	if admitted == 0 || len(failures) > 0 {
		t.Errorf("during helm upgrade %d pods were admitted and %d refused or unplaced; want none refused, e.g. %v", admitted, len(failures), failures[:min(3, len(failures))])
	}
	if tlsAfter, caAfter := servingCertificates(ctx, t, c); !bytes.Equal(tlsAfter, tlsBefore) || !bytes.Equal(caAfter, caBefore) {
		t.Error("helm upgrade replaced the serving certificate or the webhooks' caBundle; want both kept while valid")
	}
	helm("rollback", "sysctl-placement", "1", "-n", "sysctl-placement", "--wait", "--timeout", "3m")
	if pool, err := dryRunPoolLabel(ctx, c, "shop"); err != nil || pool != "db-ipc" {
		t.Errorf("after helm rollback a pod asking kernel.shmmax went to %q (%v); want db-ipc", pool, err)
	}

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

// servingCertificates returns the webhook's serving certificate and the mutating
// webhook's caBundle.
func servingCertificates(ctx context.Context, t *testing.T, c *cluster.Cluster) (tls, caBundle []byte) {
	t.Helper()
	secret, err := c.Client.CoreV1().Secrets("sysctl-placement").Get(ctx, "sysctl-placement-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return secret.Data["tls.crt"], m.Webhooks[0].ClientConfig.CABundle
}

// dryRunPoolLabel dry-run creates a pod asking kernel.shmmax in ns and returns the
// pool the webhook put in its nodeSelector (the shipped config's label).
func dryRunPoolLabel(ctx context.Context, c *cluster.Cluster, ns string) (string, error) {
	pod, err := dryRunPod(ctx, c.Client, ns, "kernel.shmmax")
	if err != nil {
		return "", err
	}
	return pod.Spec.NodeSelector[gkePool], nil
}

// admissionStream dry-run creates pods with a sysctl, one after another, until
// stopped, and keeps what went wrong.
type admissionStream struct {
	cancel   context.CancelFunc
	done     chan struct{}
	admitted int
	failures []string
}

func startAdmissionStream(ctx context.Context, c *cluster.Cluster, ns string) *admissionStream {
	ctx, cancel := context.WithCancel(ctx)
	s := &admissionStream{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			pool, err := dryRunPoolLabel(ctx, c, ns)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				s.failures = append(s.failures, err.Error())
			case pool != "db-ipc":
				s.failures = append(s.failures, fmt.Sprintf("admitted unplaced (pool %q)", pool))
			default:
				s.admitted++
			}
		}
	}()
	return s
}

// stop ends the stream and returns how many pods were admitted and placed, and the
// failures.
func (s *admissionStream) stop() (int, []string) {
	s.cancel()
	<-s.done
	return s.admitted, s.failures
}
