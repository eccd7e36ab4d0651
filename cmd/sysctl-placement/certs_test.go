package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"maps"
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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
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

func TestCertsRunTwiceChangesNothingTheSecondTime(t *testing.T) {
	client := fake.NewClientset(webhookConfigurations()...)
	first := mustCertsRun(t, client)
	if got := writes(client); len(got) != 4 {
		t.Errorf("the first run wrote %q; want both Secrets created and both configurations patched", got)
	}
	secret := tlsSecret(t, client)
	if secret.Type != corev1.SecretTypeTLS {
		t.Errorf("the Secret has type %s; want %s", secret.Type, corev1.SecretTypeTLS)
	}
	for _, key := range []string{"ca.crt", "tls.crt", "tls.key"} {
		if len(secret.Data[key]) == 0 {
			t.Errorf("the Secret has no %s", key)
		}
	}
	assertServes(t, secret.Data["tls.crt"], secret.Data["ca.crt"], "sysctl-placement.sysctl-placement.svc")

	client.ClearActions()
	second := mustCertsRun(t, client)
	if got := writes(client); len(got) != 0 {
		t.Errorf("the second run wrote %q; want no write at all", got)
	}
	if !bytes.Equal(tlsSecret(t, client).Data["tls.crt"], secret.Data["tls.crt"]) {
		t.Errorf("the second run replaced a good serving certificate")
	}
	if strings.Count(second, "up to date") != 4 {
		t.Errorf("the second run said\n%s\nwant both Secrets and both configurations reported up to date (first run said\n%s)", second, first)
	}
}

// The Secret the webhook mounts holds no key that can sign: a compromised replica, or
// its node (a kubelet reads a mounted Secret whole), must not yield the CA.
func TestTheCAKeyIsKeptOutOfTheSecretTheWebhookMounts(t *testing.T) {
	client := fake.NewClientset(webhookConfigurations()...)
	mustCertsRun(t, client)
	mounted, ca := tlsSecret(t, client), caSecret(t, client)
	if _, ok := mounted.Data["ca.key"]; ok {
		t.Errorf("the Secret %s holds ca.key; want it only in %s", mounted.Name, ca.Name)
	}
	if ca.Type != corev1.SecretTypeOpaque || len(ca.Data["ca.key"]) == 0 || !bytes.Equal(ca.Data["ca.crt"], mounted.Data["ca.crt"]) {
		t.Errorf("the CA Secret has type %s and keys %v; want an Opaque Secret with the CA mounted's ca.crt names and its key", ca.Type, slices.Collect(maps.Keys(ca.Data)))
	}
	if _, err := certs.LoadCA(ca.Data["ca.crt"], ca.Data["ca.key"]); err != nil {
		t.Errorf("the CA Secret does not hold a usable CA: %v", err)
	}
}

// Installations from before the CA had its own Secret keep their CA (and so caBundle):
// the first run moves the key out, and the next changes nothing.
func TestACASecretFromBeforeTheMoveKeepsItsCA(t *testing.T) {
	ca := newCA(t, 87600*time.Hour)
	old := seededSecret(t, ca, "sysctl-placement", 8760*time.Hour)
	old.Data["ca.key"] = ca.KeyPEM()
	bundles := [][]byte{ca.CertPEM(), ca.CertPEM(), ca.CertPEM(), ca.CertPEM()}
	client := fake.NewClientset(append(webhookConfigurations(bundles...), old)...)
	out := mustCertsRun(t, client)
	if got := writes(client); !slices.Equal(got, []string{"create secrets", "update secrets"}) {
		t.Errorf("wrote %q; want the CA Secret created and the mounted one updated, caBundle left alone", got)
	}
	if moved := caSecret(t, client); !bytes.Equal(moved.Data["ca.key"], ca.KeyPEM()) || !bytes.Equal(moved.Data["ca.crt"], ca.CertPEM()) {
		t.Errorf("the CA Secret does not hold the CA that was in %s", old.Name)
	}
	secret := tlsSecret(t, client)
	if _, ok := secret.Data["ca.key"]; ok {
		t.Errorf("the mounted Secret still holds ca.key")
	}
	if !bytes.Equal(secret.Data["tls.crt"], old.Data["tls.crt"]) {
		t.Errorf("the move replaced a good serving certificate")
	}
	if !strings.Contains(out, "moves into Secret sysctl-placement-ca") {
		t.Errorf("output %q does not say the CA moved", out)
	}
	client.ClearActions()
	mustCertsRun(t, client)
	if got := writes(client); len(got) != 0 {
		t.Errorf("the run after the move wrote %q; want nothing", got)
	}
}

func TestCertsSetsTheCABundleOfEveryWebhookInBothConfigurations(t *testing.T) {
	stale := newCA(t, 24*time.Hour).CertPEM()
	// One entry carries a foreign CA, the others none: all must end up equal.
	client := fake.NewClientset(webhookConfigurations(stale)...)
	mustCertsRun(t, client)
	secret := tlsSecret(t, client)
	bundles := caBundles(t, client)
	if len(bundles) != 2*len(webhookNames) {
		t.Fatalf("found %d webhooks; want %d", len(bundles), 2*len(webhookNames))
	}
	for name, bundle := range bundles {
		if !bytes.Equal(bundle, secret.Data["ca.crt"]) {
			t.Errorf("%s has caBundle %.40q…; want the Secret's ca.crt", name, bundle)
		}
		assertServes(t, secret.Data["tls.crt"], bundle, "sysctl-placement.sysctl-placement.svc")
	}
}

func TestOnlyTheWebhooksWhoseCABundleDiffersArePatched(t *testing.T) {
	ca := newCA(t, 87600*time.Hour)
	secret := seededSecret(t, ca, "sysctl-placement", 8760*time.Hour)
	// Three entries already trust the CA; the last has none.
	objs := append(webhookConfigurations(ca.CertPEM(), ca.CertPEM(), ca.CertPEM()), secret, seededCASecret(ca))
	client := fake.NewClientset(objs...)
	mustCertsRun(t, client)
	var patches []string
	for _, a := range client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			patches = append(patches, string(p.GetPatch()))
		}
	}
	if len(patches) != 2 {
		t.Fatalf("sent %d patches; want one per configuration", len(patches))
	}
	for _, p := range patches {
		if strings.Count(p, `"op":"add"`) != 1 || !strings.Contains(p, "/webhooks/3/clientConfig/caBundle") {
			t.Errorf("patch %s; want caBundle set on webhook 3 only", p)
		}
		if !strings.Contains(p, `"op":"test","path":"/webhooks/3/name","value":"podtemplates.sysctl-placement.io"`) {
			t.Errorf("patch %s does not guard the entry by its name", p)
		}
	}
}

func TestACertificateExpiringWithinRenewBeforeIsReplacedAndTheCAIsKept(t *testing.T) {
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

func TestAnExpiringCAIsReplacedAndStaysTrustedUntilItExpires(t *testing.T) {
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

func TestAMissingWebhookConfigurationIsReportedWithWhatToDo(t *testing.T) {
	client := fake.NewClientset()
	_, err := certsRun(t, client)
	if err == nil || !strings.Contains(err.Error(), "kubectl apply -k") || !strings.Contains(err.Error(), "--mutating-webhook") {
		t.Fatalf("err = %v; want a hint to apply the manifests or pass --mutating-webhook", err)
	}
	client = fake.NewClientset()
	if _, err := certsRun(t, client, "--mutating-webhook=", "--validating-webhook="); err != nil {
		t.Errorf("with both configurations skipped: %v; want only the Secret made", err)
	}
}

// The chart's pre-install hook runs certs with both configuration names empty, before
// the configurations exist and as a ServiceAccount that may not read them: such a run
// makes the Secrets and sends no request about a webhook configuration, not even a get.
func TestWithBothConfigurationsSkippedCertsMakesTheSecretsAndNeverAsksForAConfiguration(t *testing.T) {
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
}

func TestWriteDirKeepsAPairForTheHostsAndLeavesItAloneOnTheNextRun(t *testing.T) {
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
