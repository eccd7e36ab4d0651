package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// admissionReview wraps a pod in an admission.k8s.io/v1 AdmissionReview, as the API
// server sends it.
func admissionReview(t *testing.T, namespace string, pod *corev1.Pod) []byte {
	t.Helper()
	pod.APIVersion, pod.Kind = "v1", "Pod"
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "5d0e9c1a-2b7f-4c58-9d3e-7a1b2c3d4e5f",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: namespace,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func postReview(ctx context.Context, t *testing.T, client *http.Client, url string, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, data)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &review); err != nil || review.Response == nil {
		t.Fatalf("POST %s: not an AdmissionReview response: %v %s", url, err, data)
	}
	return review.Response
}

func TestServe(t *testing.T) {
	t.Run("answers over HTTPS and reports health, readiness and metrics", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		createSystemNamespace(ctx, t, c)
		wh, err := c.StartWebhook(ctx, cluster.WebhookOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = wh.Kill() })

		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body, err := wh.Get(ctx, path); err != nil || code != http.StatusOK {
				t.Errorf("GET %s = %d %q %v, want 200", path, code, body, err)
			}
		}

		ns := optedInNamespace(ctx, t, c, "metrics", nil)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "pg-"},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.sem", Value: "1 2 3 4"}}},
				Containers:      []corev1.Container{{Name: "c", Image: "i"}},
			},
		}
		client := wh.HTTPSClient()
		// The namespace reaches the webhook through its informer, not an API call; wait
		// until the placement shows that it has.
		err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			resp := postReview(ctx, t, client, wh.URL+"/mutate", admissionReview(t, ns, pod.DeepCopy()))
			return strings.Contains(string(resp.Patch), "nodeSelector"), nil
		})
		if err != nil {
			t.Fatalf("the opted-in namespace was never honoured: %v", err)
		}

		_, metrics, err := wh.Get(ctx, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			`sysctl_placement_placements_total{pool="ipc"} 1`,
			`sysctl_placement_config_reloads_total{result="success"} 1`,
			`kubewebhook_mutating_webhook_review_duration_seconds_count`,
			`process_resident_memory_bytes`,
		} {
			if !strings.Contains(metrics, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}

		if err := wh.Terminate(30 * time.Second); err != nil {
			t.Errorf("serve did not exit 0 after SIGTERM: %v", err)
		}
	})
}

func TestShippedManifests(t *testing.T) {
	// The shipped manifests are what users apply: every object of the self-signed
	// overlay must be accepted by a real API server, and `sysctl-placement certs`, run
	// twice as its Job would be, must change nothing the second time.
	t.Run("are accepted and certs is idempotent", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()

		kubectl := kubectlAsAdmin(ctx, t, c)
		rendered := kubectl(nil, "kustomize", filepath.Join(cluster.RepoRoot(), "deploy", "overlays", "self-signed"))
		applied := kubectl([]byte(rendered), "apply", "--server-side", "--field-manager=e2e", "-f", "-")
		for _, kind := range []string{"namespace/", "serviceaccount/", "clusterrole.rbac.authorization.k8s.io/", "deployment.apps/",
			"service/", "mutatingwebhookconfiguration.admissionregistration.k8s.io/", "validatingwebhookconfiguration.admissionregistration.k8s.io/",
			"configmap/", "poddisruptionbudget.policy/", "job.batch/"} {
			if !strings.Contains(applied, kind) {
				t.Errorf("server-side apply did not report a %s object:\n%s", kind, applied)
			}
		}

		bin, err := cluster.SysctlPlacement.Path()
		if err != nil {
			t.Fatal(err)
		}
		runCerts := func() string {
			out, err := exec.CommandContext(ctx, bin, "certs", "--kubeconfig", c.Kubeconfig).CombinedOutput()
			if err != nil {
				t.Fatalf("sysctl-placement certs: %v\n%s", err, out)
			}
			return string(out)
		}
		versions := func() []string {
			secret, err := c.Client.CoreV1().Secrets("sysctl-placement").Get(ctx, "sysctl-placement-tls", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			v, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range m.Webhooks {
				if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
					t.Errorf("mutating webhook %s has no caBundle from the Secret", w.Name)
				}
			}
			for _, w := range v.Webhooks {
				if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca.crt"]) {
					t.Errorf("validating webhook %s has no caBundle from the Secret", w.Name)
				}
			}
			return []string{secret.ResourceVersion, m.ResourceVersion, v.ResourceVersion}
		}
		first := runCerts()
		before := versions()
		second := runCerts()
		if after := versions(); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Errorf("the second certs run changed objects (resourceVersions %v → %v)\nfirst run: %s\nsecond run: %s", before, after, first, second)
		}
	})
}

// kubectlAsAdmin returns a function that runs the cluster's kubectl as an admin with
// stdin and args, fails the test when it fails, and returns its output.
func kubectlAsAdmin(ctx context.Context, t *testing.T, c *cluster.Cluster) func(stdin []byte, args ...string) string {
	return func(stdin []byte, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
}
