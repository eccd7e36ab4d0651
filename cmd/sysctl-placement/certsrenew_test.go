package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/cert"
)

func TestCertsRenewal(t *testing.T) {
	t.Run("a certificate expiring within renew-before is replaced and the CA is kept", func(t *testing.T) {
		ca := newCA(t, 87600*time.Hour)
		old := seededSecret(t, ca, "sysctl-placement", 240*time.Hour) // expires in 10 days
		client := fake.NewClientset(append(webhookConfigurations(ca.CertPEM(), ca.CertPEM(), ca.CertPEM(), ca.CertPEM()), old, seededCASecret(ca))...)
		out := mustCertsRun(t, client, "--renew-before", "720h", "--validity", "8760h")

		if got := writes(client); len(got) != 1 || !strings.HasPrefix(got[0], "update secrets") {
			t.Errorf("wrote %q; want only the Secret updated (the CA, and so caBundle, is kept)", got)
		}
		secret := tlsSecret(t, client)
		if bytes.Equal(secret.Data["tls.crt"], old.Data["tls.crt"]) || bytes.Equal(secret.Data["tls.key"], old.Data["tls.key"]) {
			t.Fatalf("the serving certificate or key expiring within --renew-before was kept")
		}
		if !bytes.Equal(secret.Data["ca.crt"], old.Data["ca.crt"]) || !bytes.Equal(caSecret(t, client).Data["ca.key"], ca.KeyPEM()) {
			t.Errorf("the CA was replaced; a good CA must be kept so that caBundle stays")
		}
		if notAfter := leaf(t, secret.Data["tls.crt"]).NotAfter; time.Until(notAfter) < 8759*time.Hour {
			t.Errorf("the new serving certificate expires at %s; want about --validity (8760h) from now", notAfter)
		}
		assertServes(t, secret.Data["tls.crt"], ca.CertPEM(), "sysctl-placement.sysctl-placement.svc")
		if !strings.Contains(out, "within --renew-before") {
			t.Errorf("output %q does not say why the certificate was replaced", out)
		}
	})

	t.Run("an expiring CA is replaced and stays trusted until it expires", func(t *testing.T) {
		oldCA := newCA(t, 240*time.Hour) // within --renew-before
		old := seededSecret(t, oldCA, "sysctl-placement", 100*time.Hour)
		client := fake.NewClientset(append(webhookConfigurations(), old, seededCASecret(oldCA))...)
		mustCertsRun(t, client)

		secret := tlsSecret(t, client)
		bundle, err := cert.ParseCertsPEM(secret.Data["ca.crt"])
		if err != nil {
			t.Fatal(err)
		}
		if len(bundle) != 2 || bundle[0].Equal(oldCA.Certificate()) || !bundle[1].Equal(oldCA.Certificate()) {
			t.Fatalf("ca.crt holds %d certificates; want the new CA first, then the old one until it expires", len(bundle))
		}
		// The pods still serve the old certificate until the kubelet swaps the volume.
		assertServes(t, old.Data["tls.crt"], secret.Data["ca.crt"], "sysctl-placement.sysctl-placement.svc")
		assertServes(t, secret.Data["tls.crt"], secret.Data["ca.crt"], "sysctl-placement.sysctl-placement.svc")
		for name, b := range caBundles(t, client) {
			if !bytes.Equal(b, secret.Data["ca.crt"]) {
				t.Errorf("%s does not trust both CAs", name)
			}
		}

		client.ClearActions()
		mustCertsRun(t, client)
		if got := writes(client); len(got) != 0 {
			t.Errorf("the run after the CA rotation wrote %q; want nothing", got)
		}
	})
}

func TestACertificateForAnotherServiceIsReplaced(t *testing.T) {
	ca := newCA(t, 87600*time.Hour)
	old := seededSecret(t, ca, "old-webhook", 8760*time.Hour)
	client := fake.NewClientset(append(webhookConfigurations(), old, seededCASecret(ca))...)
	out := mustCertsRun(t, client)
	secret := tlsSecret(t, client)
	assertServes(t, secret.Data["tls.crt"], secret.Data["ca.crt"], "sysctl-placement.sysctl-placement.svc")
	if !bytes.Equal(caSecret(t, client).Data["ca.key"], ca.KeyPEM()) {
		t.Errorf("the CA was replaced although only the names changed")
	}
	if !strings.Contains(out, "old-webhook") {
		t.Errorf("output %q does not name the old certificate's hosts", out)
	}
}

func TestASecretOfAnotherTypeIsLeftAloneWithAHint(t *testing.T) {
	opaque := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement-tls", Namespace: "sysctl-placement"},
		Type:       corev1.SecretTypeOpaque,
	}
	client := fake.NewClientset(append(webhookConfigurations(), opaque)...)
	_, err := certsRun(t, client)
	if err == nil || !strings.Contains(err.Error(), "--secret") {
		t.Fatalf("err = %v; want a refusal that says to delete it or pass another --secret", err)
	}
	if got := writes(client); len(got) != 0 {
		t.Errorf("wrote %q; want nothing", got)
	}
}

func TestASecretManagedByCertManagerIsLeftToIt(t *testing.T) {
	managed := seededSecret(t, newCA(t, 87600*time.Hour), "sysctl-placement", 8760*time.Hour)
	managed.Annotations = map[string]string{"cert-manager.io/certificate-name": "sysctl-placement-serving"}
	client := fake.NewClientset(append(webhookConfigurations(), managed)...)
	_, err := certsRun(t, client)
	if err == nil || !strings.Contains(err.Error(), "cert-manager") {
		t.Fatalf("err = %v; want a refusal naming cert-manager", err)
	}
	if got := writes(client); len(got) != 0 {
		t.Errorf("wrote %q; want nothing", got)
	}
}

func TestCertsConfigurations(t *testing.T) {
	t.Run("a missing webhook configuration is reported with what to do", func(t *testing.T) {
		client := fake.NewClientset()
		_, err := certsRun(t, client)
		if err == nil || !strings.Contains(err.Error(), "kubectl apply -k") || !strings.Contains(err.Error(), "--mutating-webhook") {
			t.Fatalf("err = %v; want a hint to apply the manifests or pass --mutating-webhook", err)
		}
		client = fake.NewClientset()
		if _, err := certsRun(t, client, "--mutating-webhook=", "--validating-webhook="); err != nil {
			t.Errorf("with both configurations skipped: %v; want only the Secret made", err)
		}
	})

	// The chart's pre-install hook runs certs with both configuration names empty, before
	// the configurations exist and as a ServiceAccount that may not read them: such a run
	// makes the Secrets and sends no request about a webhook configuration, not even a get.
	t.Run("with both configurations skipped certs makes the secrets and never asks for a configuration", func(t *testing.T) {
		client := fake.NewClientset(webhookConfigurations()...)
		mustCertsRun(t, client, "--mutating-webhook=", "--validating-webhook=")
		if got := writes(client); !slices.Equal(got, []string{"create secrets", "create secrets"}) {
			t.Errorf("wrote %q; want both Secrets created and nothing else", got)
		}
		for _, a := range client.Actions() {
			if a.GetResource().Group == admissionregistrationv1.GroupName {
				t.Errorf("sent %s %s; want no request about webhook configurations", a.GetVerb(), a.GetResource().Resource)
			}
		}
		assertServes(t, tlsSecret(t, client).Data["tls.crt"], caSecret(t, client).Data["ca.crt"], "sysctl-placement.sysctl-placement.svc")
	})
}

func TestCertsWriteDir(t *testing.T) {
	t.Run("write-dir keeps a pair for the hosts and leaves it alone on the next run", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "tls")
		runOK := func(args ...string) string {
			t.Helper()
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"certs", "--write-dir", dir}, args...), nil, &stdout, &stderr); code != 0 {
				t.Fatalf("certs %q exited %d: %s", args, code, stderr.String())
			}
			return stdout.String()
		}
		read := func(name string) []byte {
			t.Helper()
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			return data
		}

		runOK("--host", "127.0.0.1", "--host", "localhost")
		caPEM, certPEM := read("ca.crt"), read("tls.crt")
		assertServes(t, certPEM, caPEM, "localhost")
		assertServes(t, certPEM, caPEM, "sysctl-placement.sysctl-placement.svc")
		if ips := leaf(t, certPEM).IPAddresses; len(ips) != 1 || !ips[0].Equal(net.ParseIP("127.0.0.1")) {
			t.Errorf("IP names = %v; want 127.0.0.1", ips)
		}
		for _, key := range []string{"tls.key", "ca.key"} {
			info, err := os.Stat(filepath.Join(dir, key))
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v; want 0600", key, info.Mode().Perm())
			}
		}

		if out := runOK("--host", "localhost", "--host", "127.0.0.1"); !strings.Contains(out, "up to date") {
			t.Errorf("the second run said %q; want up to date", out)
		}
		if !bytes.Equal(read("tls.crt"), certPEM) || !bytes.Equal(read("ca.crt"), caPEM) {
			t.Errorf("the second run rewrote a good pair")
		}

		runOK("--host", "::1")
		if bytes.Equal(read("tls.crt"), certPEM) {
			t.Errorf("a certificate for other hosts was kept")
		}
		if !bytes.Equal(read("ca.crt"), caPEM) {
			t.Errorf("the CA changed although only the hosts did")
		}
	})
}
