package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// webhookUser is how the API server authenticates the shipped ServiceAccount.
const webhookUser = "system:serviceaccount:sysctl-placement:sysctl-placement"

func TestSecurity(t *testing.T) {
	t.Run("serve as the shipped service account with exactly the shipped RBAC places a deployment", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{AsServiceAccount: true})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "least-privilege", nil)

		if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, postgres(2), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(labels.Set{"app": "postgres"}), 2) {
			if pool := env.poolOf(ctx, t, &p); pool != "ipc" {
				t.Errorf("pod %s runs in pool %q, want ipc", p.Name, pool)
			}
		}

		// What the account may do is exactly what the code calls; everything a compromised
		// webhook could abuse is refused. The source of these calls is deploy/apicalls,
		// which the main module's tests hold to the code and to the manifests; this module
		// does not import the main module (its dependency versions would enter the control
		// plane's build), so the calls are spelled here again.
		allowed := []authorizationv1.ResourceAttributes{
			{Verb: "list", Resource: "namespaces"},
			{Verb: "watch", Resource: "namespaces"},
			{Verb: "list", Resource: "pods"},
			{Verb: "watch", Resource: "pods"},
			{Verb: "create", Group: "events.k8s.io", Resource: "events", Namespace: ns},
			{Verb: "list", Resource: "nodes"},
			{Verb: "watch", Resource: "nodes"},
			{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: "sysctl-placement", Name: "sysctl-placement-discovery"},
			{Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Namespace: "sysctl-placement", Name: "sysctl-placement-audit-events"},
			{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "sysctl-placement", Name: "sysctl-placement-audit-events"},
			{Verb: "get", Group: "coordination.k8s.io", Resource: "leases", Namespace: "sysctl-placement", Name: "sysctl-placement-discovery"},
			{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "sysctl-placement", Name: "sysctl-placement-discovery"},
			{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: "sysctl-placement"},
			{Verb: "list", Resource: "configmaps", Namespace: "sysctl-placement", Name: "sysctl-placement-discovery"},
			{Verb: "watch", Resource: "configmaps", Namespace: "sysctl-placement", Name: "sysctl-placement-discovery"},
			{Verb: "update", Resource: "configmaps", Namespace: "sysctl-placement", Name: "sysctl-placement-discovery"},
		}
		denied := []authorizationv1.ResourceAttributes{
			// The discovery result is shipped; serve only updates it.
			{Verb: "create", Resource: "configmaps", Namespace: "sysctl-placement"},
			{Verb: "get", Resource: "secrets", Namespace: "sysctl-placement"},
			{Verb: "list", Resource: "secrets"},
			{Verb: "create", Resource: "pods", Namespace: ns},
			{Verb: "patch", Resource: "pods", Namespace: ns},
			{Verb: "update", Resource: "namespaces", Name: ns},
			{Verb: "patch", Resource: "nodes", Name: "any"},
			{Verb: "get", Resource: "nodes", Subresource: "proxy", Name: "any"},
			{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: ns},
			{Verb: "list", Resource: "configmaps"},
			{Verb: "update", Resource: "configmaps", Namespace: "sysctl-placement", Name: "sysctl-placement-config"},
			{Verb: "watch", Resource: "configmaps", Namespace: "sysctl-placement"},
			{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"},
			{Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
			{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"},
			// Only its own Leases and ConfigMap, by name.
			{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "sysctl-placement", Name: "another-controller"},
			{Verb: "get", Resource: "configmaps", Namespace: "sysctl-placement", Name: "sysctl-placement-config"},
			{Verb: "get", Resource: "nodes", Name: "any"},
			{Verb: "impersonate", Resource: "users"},
			// Its own token never goes to a kubelet: the discovery account reads /configz.
			{Verb: "get", Resource: "nodes", Subresource: "configz", Name: "any"},
			{Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: "sysctl-placement", Name: "sysctl-placement"},
		}
		check := func(attrs authorizationv1.ResourceAttributes, want bool) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: webhookUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:sysctl-placement", "system:authenticated"},
				ResourceAttributes: &attrs,
			}}
			got, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed != want {
				t.Errorf("%s %s/%s (group %q, namespace %q, name %q): allowed = %v, want %v", attrs.Verb, attrs.Resource, attrs.Subresource, attrs.Group, attrs.Namespace, attrs.Name, got.Status.Allowed, want)
			}
		}
		for _, a := range allowed {
			check(a, true)
		}
		for _, a := range denied {
			check(a, false)
		}
		logData, err := os.ReadFile(env.webhook.LogFile)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToLower(string(logData)), "forbidden") {
			t.Errorf("serve hit a missing permission:\n%s", process.Tail(env.webhook.LogFile, 20))
		}
	})

	t.Run("client CA file admits the API servers client certificate and rejects an API server without", func(t *testing.T) {
		certs := newClientCertFixture(t)
		// The API server reads its AdmissionConfiguration at start, so the address that
		// gets the client certificate is fixed first: a loopback forwarder in front of the
		// webhook. Registering the webhook at its own address instead is an API server
		// that was not configured with a client certificate for it.
		configured, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		c := cluster.StartForTest(t, cluster.Options{APIServerFlags: map[string][]string{
			"admission-control-config-file": {certs.admissionConfig(t, configured)},
		}})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
			t.Fatal(err)
		}
		createSystemNamespace(ctx, t, c)
		w, err := c.StartWebhook(ctx, cluster.WebhookOptions{AsServiceAccount: true, ExtraArgs: []string{"--client-ca-file", certs.caFile}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Terminate(30 * time.Second) })
		lb, err := cluster.StartLoadBalancer(cluster.LoadBalancerOptions{Listen: configured},
			cluster.Backend{Addr: strings.TrimPrefix(w.URL, "https://"), ReadyURL: w.MetricsURL + "/readyz"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lb.Close() })
		if err := lb.WaitReady(ctx, 1, 30*time.Second); err != nil {
			t.Fatal(err)
		}

		// With the client certificate: the normal flow.
		if err := c.RegisterWebhookAt(ctx, "https://"+configured, w.CABundle); err != nil {
			t.Fatalf("the API server with a client certificate could not use the webhook: %v\n%s", err, process.Tail(w.LogFile, 20))
		}
		ns := optedInNamespace(ctx, t, c, "mtls", nil)
		placed, err := c.Client.CoreV1().Pods(ns).Create(ctx, sysctlPod("with-client-cert"), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("pod creation failed with the client certificate configured: %v", err)
		}
		if placed.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
			t.Errorf("the pod was not placed: nodeSelector %v", placed.Spec.NodeSelector)
		}

		// Without one: the webhook refuses the handshake and, with failurePolicy Fail, the
		// pod is not created. A plain HTTPS client without a certificate is refused too.
		if _, err := w.HTTPSClient().Post(w.URL+"/mutate", "application/json", strings.NewReader("{}")); err == nil {
			t.Error("the webhook answered a client without a certificate")
		}
		if err := registerWithoutWaiting(ctx, c, w.URL, w.CABundle); err != nil {
			t.Fatal(err)
		}
		// The API server picks the new configuration up asynchronously: poll until the
		// refusal shows, and require it to stay a refusal (never an unplaced pod).
		var lastErr error
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			pod := sysctlPod("")
			pod.GenerateName = "without-client-cert-"
			created, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				lastErr = err
				break
			}
			if created.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
				t.Fatalf("a pod was admitted unplaced: %v", created.Spec.NodeSelector)
			}
			if err := pollPause(ctx, 200*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if lastErr == nil {
			t.Fatal("the API server without a client certificate could still use the webhook")
		}
		if !strings.Contains(lastErr.Error(), "failed calling webhook") {
			t.Errorf("the refusal is not the failed webhook call: %v", lastErr)
		}
		t.Logf("without a client certificate: %v", lastErr)
		logData, _ := os.ReadFile(w.LogFile)
		if n := strings.Count(string(logData), "\n"); n > 500 {
			t.Errorf("the webhook wrote %d log lines; refused handshakes must not flood the log", n)
		}
	})
}

// clientCertFixture is a client CA and a client certificate for the API server.
type clientCertFixture struct {
	caFile, certPEM, keyPEM string
	dir                     string
}

func newClientCertFixture(t *testing.T) clientCertFixture {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webhook-client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver-webhook-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := clientCertFixture{
		dir:     dir,
		caFile:  filepath.Join(dir, "client-ca.crt"),
		certPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		keyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
	}
	if err := os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// admissionConfig writes the API server's AdmissionConfiguration: both webhook
// admission plugins read kubeConfigFile, whose users are keyed by the webhook's
// host:port (here a loopback address; in a cluster the Service's DNS name). Only
// hostPort gets the client certificate; any other webhook address gets none.
func (f clientCertFixture) admissionConfig(t *testing.T, hostPort string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.AuthInfos[hostPort] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte(f.certPEM), ClientKeyData: []byte(f.keyPEM)}
	data, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(f.dir, "webhook-clients.kubeconfig")
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		t.Fatal(err)
	}
	plugin := func(name string) string {
		return `  - name: ` + name + `
    configuration:
      apiVersion: apiserver.config.k8s.io/v1
      kind: WebhookAdmissionConfiguration
      kubeConfigFile: ` + kubeconfig + "\n"
	}
	config := "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n" +
		plugin("ValidatingAdmissionWebhook") + plugin("MutatingAdmissionWebhook")
	path := filepath.Join(f.dir, "admission-config.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sysctlPod is a bare pod asking for kernel.shmmax, which only the ipc pool allows.
func sysctlPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "1"}}},
			Containers:      []corev1.Container{{Name: "c", Image: "i"}},
		},
	}
}

// registerWithoutWaiting points the shipped webhook configurations at baseURL without
// waiting for a probe pod to come back placed (it never will when the call fails).
func registerWithoutWaiting(ctx context.Context, c *cluster.Cluster, baseURL string, caBundle []byte) error {
	m, v, err := c.ShippedWebhookConfigurations(ctx)
	if err != nil {
		return err
	}
	for i := range m.Webhooks {
		u := baseURL + "/mutate"
		m.Webhooks[i].ClientConfig.URL, m.Webhooks[i].ClientConfig.Service, m.Webhooks[i].ClientConfig.CABundle = &u, nil, caBundle
	}
	for i := range v.Webhooks {
		u := baseURL + "/validate"
		v.Webhooks[i].ClientConfig.URL, v.Webhooks[i].ClientConfig.Service, v.Webhooks[i].ClientConfig.CABundle = &u, nil, caBundle
	}
	adm := c.Client.AdmissionregistrationV1()
	old, err := adm.MutatingWebhookConfigurations().Get(ctx, m.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	m.ResourceVersion = old.ResourceVersion
	if _, err := adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{}); err != nil {
		return err
	}
	oldV, err := adm.ValidatingWebhookConfigurations().Get(ctx, v.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	v.ResourceVersion = oldV.ResourceVersion
	_, err = adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
	return err
}

// pollPause waits d or until ctx ends; it paces a poll loop, it is not a wait for a
// condition.
func pollPause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
