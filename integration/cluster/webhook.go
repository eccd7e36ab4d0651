package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// RepoRoot is the main module's directory (integration/ is inside it).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ShippedWebhookConfigurations renders deploy/base with `kubectl kustomize` and
// returns its Mutating and Validating webhook configurations: the tests register
// exactly what users install, only pointed at a loopback URL.
func (c *Cluster) ShippedWebhookConfigurations(ctx context.Context) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	docs, err := c.Kustomize(ctx, filepath.Join(RepoRoot(), "deploy", "base"))
	if err != nil {
		return nil, nil, err
	}
	var m *admissionregistrationv1.MutatingWebhookConfiguration
	var v *admissionregistrationv1.ValidatingWebhookConfiguration
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, nil, err
		}
		switch tm.Kind {
		case "MutatingWebhookConfiguration":
			m = &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict(doc, m); err != nil {
				return nil, nil, fmt.Errorf("the shipped MutatingWebhookConfiguration: %w", err)
			}
		case "ValidatingWebhookConfiguration":
			v = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict(doc, v); err != nil {
				return nil, nil, fmt.Errorf("the shipped ValidatingWebhookConfiguration: %w", err)
			}
		}
	}
	if m == nil || v == nil {
		return nil, nil, errors.New("deploy/base renders no Mutating or no Validating webhook configuration")
	}
	return m, v, nil
}

// Kustomize renders a kustomization with the cluster's kubectl and splits the
// documents.
func (c *Cluster) Kustomize(ctx context.Context, dir string) ([][]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %v: %s", dir, err, stderr.String())
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

// RegisterWebhook creates (or replaces) the shipped webhook configurations with every
// entry pointed at w: clientConfig.url on loopback and w's CA. Everything else —
// rules, matchConditions, namespaceSelector, failurePolicy — is as shipped.
func (c *Cluster) RegisterWebhook(ctx context.Context, w *Webhook) error {
	return c.RegisterWebhookAt(ctx, w.URL, w.CABundle)
}

// RegisterWebhookAt is RegisterWebhook for any base URL (e.g. a load balancer).
func (c *Cluster) RegisterWebhookAt(ctx context.Context, baseURL string, caBundle []byte) error {
	m, v, err := c.ShippedWebhookConfigurations(ctx)
	if err != nil {
		return err
	}
	for i := range m.Webhooks {
		m.Webhooks[i].ClientConfig = pointedAt(baseURL+"/mutate", caBundle)
	}
	for i := range v.Webhooks {
		v.Webhooks[i].ClientConfig = pointedAt(baseURL+"/validate", caBundle)
	}
	admission := c.Client.AdmissionregistrationV1()
	if err := admission.MutatingWebhookConfigurations().Delete(ctx, m.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err := admission.ValidatingWebhookConfigurations().Delete(ctx, v.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if _, err := admission.MutatingWebhookConfigurations().Create(ctx, m, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("the API server refused the shipped MutatingWebhookConfiguration: %w", err)
	}
	if _, err := admission.ValidatingWebhookConfigurations().Create(ctx, v, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("the API server refused the shipped ValidatingWebhookConfiguration: %w", err)
	}
	return c.waitForWebhookActive(ctx)
}

func pointedAt(url string, caBundle []byte) admissionregistrationv1.WebhookClientConfig {
	return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle}
}

// waitForWebhookActive waits until the API server calls the webhook: a dry-run pod
// with a sysctl in a namespace annotated for it comes back placed. The API server
// picks up new webhook configurations asynchronously.
func (c *Cluster) waitForWebhookActive(ctx context.Context) error {
	const probeNS = "sysctl-placement-probe"
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probeNS, Labels: map[string]string{"sysctl-placement.io/enabled": "true"}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "1"}}},
			Containers:      []corev1.Container{{Name: "c", Image: "probe"}},
		},
	}
	// The probe's placement warning is expected; keep it out of the log.
	quiet := rest.CopyConfig(c.Config)
	quiet.WarningHandler = rest.NoWarnings{}
	client, err := kubernetes.NewForConfig(quiet)
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := client.CoreV1().Pods(probeNS).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			// The namespace informer may not have seen the probe namespace yet.
			return false, nil
		}
		return len(got.Spec.NodeSelector) > 0 || strings.Contains(got.Annotations["sysctl-placement.io/placement"], "pools"), nil
	})
}
