package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/cert"

	"github.com/sysctl-placement/sysctl-placement/certs"
)

// webhookNames are the entries of deploy/base's webhook configurations.
var webhookNames = []string{"pods.sysctl-placement.io", "workloads.sysctl-placement.io", "cronjobs.sysctl-placement.io", "podtemplates.sysctl-placement.io"}

// webhookConfigurations returns both configurations as the manifests create them:
// every entry without a caBundle, or with bundles[i] when given.
func webhookConfigurations(bundles ...[]byte) []runtime.Object {
	var mutating []admissionregistrationv1.MutatingWebhook
	var validating []admissionregistrationv1.ValidatingWebhook
	for i, name := range webhookNames {
		var bundle []byte
		if i < len(bundles) {
			bundle = bundles[i]
		}
		cc := admissionregistrationv1.WebhookClientConfig{
			Service:  &admissionregistrationv1.ServiceReference{Namespace: "sysctl-placement", Name: "sysctl-placement"},
			CABundle: bundle,
		}
		mutating = append(mutating, admissionregistrationv1.MutatingWebhook{Name: name, ClientConfig: cc})
		validating = append(validating, admissionregistrationv1.ValidatingWebhook{Name: name, ClientConfig: cc})
	}
	return []runtime.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement"}, Webhooks: mutating},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement"}, Webhooks: validating},
	}
}

// certsRun parses args as `certs` flags and runs them against client.
func certsRun(t *testing.T, client *fake.Clientset, args ...string) (string, error) {
	t.Helper()
	o, err := parseCertsFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("certs %q: %v", args, err)
	}
	var out bytes.Buffer
	err = o.ensureCluster(context.Background(), client, &out)
	return out.String(), err
}

func mustCertsRun(t *testing.T, client *fake.Clientset, args ...string) string {
	t.Helper()
	out, err := certsRun(t, client, args...)
	if err != nil {
		t.Fatalf("certs %q: %v", args, err)
	}
	return out
}

// writes are the actions that changed something, as "verb resource".
func writes(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		switch a.GetVerb() {
		case "get", "list", "watch":
			continue
		}
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
	}
	return out
}

func tlsSecret(t *testing.T, client *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := client.CoreV1().Secrets("sysctl-placement").Get(context.Background(), "sysctl-placement-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the TLS Secret: %v", err)
	}
	return s
}

func caSecret(t *testing.T, client *fake.Clientset) *corev1.Secret {
	t.Helper()
	s, err := client.CoreV1().Secrets("sysctl-placement").Get(context.Background(), "sysctl-placement-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the CA Secret: %v", err)
	}
	return s
}

// caBundles returns every webhook entry's caBundle, keyed "kind/webhook".
func caBundles(t *testing.T, client *fake.Clientset) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	out := map[string][]byte{}
	m, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range m.Webhooks {
		out["mutating/"+w.Name] = w.ClientConfig.CABundle
	}
	v, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Webhooks {
		out["validating/"+w.Name] = w.ClientConfig.CABundle
	}
	return out
}

// leaf parses the first certificate of a PEM file.
func leaf(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	cs, err := cert.ParseCertsPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

// assertServes checks that the serving certificate verifies, for host, against the
// CA bundle the API server would use.
func assertServes(t *testing.T, certPEM, bundle []byte, host string) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatalf("the CA bundle holds no certificate")
	}
	if _, err := leaf(t, certPEM).Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("the serving certificate does not verify for %s against the CA bundle: %v", host, err)
	}
}

// seededSecret is the kubernetes.io/tls Secret a run with ca left, with a serving
// certificate for service valid for validity.
func seededSecret(t *testing.T, ca *certs.CA, service string, validity time.Duration) *corev1.Secret {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServing(service, "sysctl-placement", nil, nil, validity)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement-tls", Namespace: "sysctl-placement"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"ca.crt": ca.CertPEM(), "tls.crt": certPEM, "tls.key": keyPEM},
	}
}

// seededCASecret is the Secret that keeps ca, as a run left it.
func seededCASecret(ca *certs.CA) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement-ca", Namespace: "sysctl-placement"},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"ca.crt": ca.CertPEM(), "ca.key": ca.KeyPEM()},
	}
}

func newCA(t *testing.T, validity time.Duration) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA("test-ca", validity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestCertsFlagMistakesAreRefusedWithAHint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"renew-before not shorter than validity", []string{"--validity", "24h", "--renew-before", "24h"}, "--renew-before"},
		{"a CA that would not outlive its certificates", []string{"--validity", "8760h", "--ca-validity", "8760h"}, "--ca-validity"},
		{"a host that is no name", []string{"--host", "not a host"}, "--host"},
		{"an invalid service name", []string{"--service", "Webhook"}, "--service"},
		{"a positional argument", []string{"extra"}, "flags only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"certs", "--write-dir", t.TempDir()}, tc.args...), nil, &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and a message about %s", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestTheCASecretMustNotBeTheMountedOne(t *testing.T) {
	_, err := parseCertsFlags([]string{"--ca-secret", "sysctl-placement-tls"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--ca-secret") {
		t.Errorf("err = %v; want a refusal naming --ca-secret", err)
	}
}
