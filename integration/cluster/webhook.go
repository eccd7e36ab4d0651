package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
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

// WebhookOptions configure a `sysctl-placement serve` process.
type WebhookOptions struct {
	// ConfigFile is the PlacementConfig. Default: deploy/examples/placement-config.yaml,
	// whose pools are the DefaultPools.
	ConfigFile string
	// Kubeconfig is what serve uses to reach the API server. Default: the admin's,
	// or the shipped ServiceAccount's with AsServiceAccount.
	Kubeconfig string
	// AsServiceAccount runs serve as the shipped ServiceAccount bound to exactly the
	// shipped RBAC (ApplyShippedIdentity), as in a real installation, instead of as an
	// administrator. Ignored when Kubeconfig is set.
	AsServiceAccount bool
	// Name tells replicas apart in logs and file names. Default "webhook".
	Name string
	// ExtraRBAC are RBAC manifests of components (paths from the repository root, e.g.
	// deploy/components/policy-backend/rbac.yaml) applied with the shipped identity,
	// for the flags ExtraArgs turns on. Only with AsServiceAccount.
	ExtraRBAC []string
	// ExtraArgs are appended to the serve command line.
	ExtraArgs []string
	// Env is added to the process environment.
	Env []string
}

// Webhook is a running `sysctl-placement serve` process on loopback.
type Webhook struct {
	// URL is the HTTPS base URL of /mutate and /validate.
	URL string
	// MetricsURL is the plain HTTP base URL of /healthz, /readyz and /metrics.
	MetricsURL string
	// CABundle verifies the serving certificate.
	CABundle []byte
	// CertDir holds ca.crt, tls.crt and tls.key (written by `sysctl-placement certs`).
	CertDir string
	// LogFile is where the process writes its log.
	LogFile string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartWebhook starts the real serve command with certificates from
// `sysctl-placement certs --write-dir`, and waits until /readyz answers 200.
func (c *Cluster) StartWebhook(ctx context.Context, opts WebhookOptions) (*Webhook, error) {
	bin, err := SysctlPlacement.Path()
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "webhook"
	}
	if opts.ConfigFile == "" {
		opts.ConfigFile = filepath.Join(RepoRoot(), "deploy", "examples", "placement-config.yaml")
	}
	if opts.Kubeconfig == "" && opts.AsServiceAccount {
		id, err := c.ApplyShippedIdentity(ctx)
		if err != nil {
			return nil, err
		}
		for _, path := range opts.ExtraRBAC {
			if err := c.applyRBACFile(ctx, filepath.Join(RepoRoot(), path), id); err != nil {
				return nil, err
			}
		}
		opts.Kubeconfig = id.Kubeconfig
	}
	if opts.Kubeconfig == "" {
		opts.Kubeconfig = c.Kubeconfig
	}
	// The same directory for every replica, so they share one CA like Pods sharing a
	// Secret; `certs` keeps an existing valid pair.
	w := &Webhook{CertDir: filepath.Join(c.WorkDir, "webhook-certs"), done: make(chan struct{})}
	certs := exec.CommandContext(ctx, bin, "certs", "--write-dir", w.CertDir, "--host", "127.0.0.1", "--host", "localhost")
	if out, err := certs.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sysctl-placement certs --write-dir: %v\n%s", err, out)
	}
	if w.CABundle, err = os.ReadFile(filepath.Join(w.CertDir, "ca.crt")); err != nil {
		return nil, err
	}
	listen, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	metricsListen, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	w.URL, w.MetricsURL = "https://"+listen, "http://"+metricsListen
	args := append([]string{"serve",
		"--config", opts.ConfigFile,
		"--tls-cert-file", filepath.Join(w.CertDir, "tls.crt"),
		"--tls-private-key-file", filepath.Join(w.CertDir, "tls.key"),
		"--listen", listen,
		"--metrics-listen", metricsListen,
		"--kubeconfig", opts.Kubeconfig,
		"--development",
	}, opts.ExtraArgs...)
	w.LogFile = filepath.Join(c.WorkDir, opts.Name+".log")
	logFile, err := os.Create(w.LogFile)
	if err != nil {
		return nil, err
	}
	w.cmd = exec.Command(bin, args...)
	w.cmd.Stdout, w.cmd.Stderr = logFile, logFile
	w.cmd.Env = append(os.Environ(), opts.Env...)
	if err := w.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("could not start sysctl-placement serve: %w", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		logFile.Close()
		close(w.done)
	}()
	if err := w.WaitReady(ctx, 30*time.Second); err != nil {
		_ = w.Kill()
		return nil, fmt.Errorf("%w\nlast lines of %s:\n%s", err, w.LogFile, tail(w.LogFile, 20))
	}
	return w, nil
}

// WaitReady polls /readyz until it answers 200, the process exits, or timeout.
func (w *Webhook) WaitReady(ctx context.Context, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case <-w.done:
			return false, fmt.Errorf("sysctl-placement serve exited: %v", w.err)
		default:
		}
		code, _, err := w.Get(ctx, "/readyz")
		return err == nil && code == http.StatusOK, nil
	})
}

// Get fetches a path from the metrics port.
func (w *Webhook) Get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.MetricsURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// HTTPSClient trusts the webhook's CA.
func (w *Webhook) HTTPSClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.CABundle)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// PID is the process id of the serve process, to read its /proc/<pid>/status.
func (w *Webhook) PID() int { return w.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (w *Webhook) Exited() <-chan struct{} { return w.done }

// ExitErr is the process's exit error once Exited is closed (nil for status 0).
func (w *Webhook) ExitErr() error { return w.err }

// Terminate sends SIGTERM, as the kubelet does, and waits for the exit.
func (w *Webhook) Terminate(timeout time.Duration) error {
	select {
	case <-w.done:
		return w.err
	default:
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-w.done:
		return w.err
	case <-time.After(timeout):
		_ = w.Kill()
		return fmt.Errorf("sysctl-placement serve did not exit within %s of SIGTERM", timeout)
	}
}

// Kill sends SIGKILL and waits for the exit.
func (w *Webhook) Kill() error {
	select {
	case <-w.done:
		return nil
	default:
	}
	_ = w.cmd.Process.Kill()
	<-w.done
	return nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
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
