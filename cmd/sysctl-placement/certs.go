package main

// `certs` bootstraps the webhook's TLS: a CA and a serving certificate for the
// webhook's Service in a kubernetes.io/tls Secret, and the CA in the caBundle of every
// webhook entry of both webhook configurations. It is idempotent, so the same command
// serves as the first install, the periodic renewal (deploy/overlays/self-signed runs
// it from a Job and a CronJob) and a repair: whatever is still good is left alone.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/cert"

	"github.com/sysctl-placement/sysctl-placement/certs"
)

// Keys of the TLS Secret and file names of --write-dir. tls.crt, tls.key and ca.crt
// are the kubernetes.io/tls conventions (cert-manager writes the same); ca.key keeps
// the CA so that a renewed serving certificate needs no new caBundle.
const (
	keyCACert    = "ca.crt"
	keyCAKey     = "ca.key"
	keyTLSCert   = corev1.TLSCertKey
	keyTLSKey    = corev1.TLSPrivateKeyKey
	caCommonName = "sysctl-placement-ca"

	// certManagerCertificateAnnotation marks a Secret that cert-manager writes.
	certManagerCertificateAnnotation = "cert-manager.io/certificate-name"
)

// certsOptions are the flags of `certs`.
type certsOptions struct {
	namespace         string
	service           string
	secret            string
	mutatingWebhook   string
	validatingWebhook string
	kubeconfig        string
	validity          time.Duration
	caValidity        time.Duration
	renewBefore       time.Duration
	writeDir          string
	hosts             stringList

	// Parsed from hosts by validate.
	extraDNS []string
	extraIPs []net.IP
}

func (o *certsOptions) validate() error {
	switch {
	case o.validity <= 0:
		return usageError("--validity must be positive, such as 8760h")
	case o.renewBefore < 0 || o.renewBefore >= o.validity:
		return usageError("--renew-before (%s) must be at least 0 and shorter than --validity (%s), or every run would renew", o.renewBefore, o.validity)
	case o.caValidity <= o.validity:
		return usageError("--ca-validity (%s) must be longer than --validity (%s): a serving certificate cannot outlive its CA", o.caValidity, o.validity)
	}
	if msgs := validation.IsDNS1035Label(o.service); len(msgs) > 0 {
		return usageError("--service %q is not a Service name: %s", o.service, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(o.namespace); len(msgs) > 0 {
		return usageError("--namespace %q is not a namespace name: %s", o.namespace, strings.Join(msgs, "; "))
	}
	o.extraDNS, o.extraIPs = nil, nil
	for _, h := range o.hosts {
		if ip := net.ParseIP(h); ip != nil {
			o.extraIPs = append(o.extraIPs, ip)
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
			return usageError("--host %q is neither an IP address nor a DNS name: %s", h, strings.Join(msgs, "; "))
		}
		o.extraDNS = append(o.extraDNS, h)
	}
	if o.writeDir != "" {
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(o.secret); len(msgs) > 0 {
		return usageError("--secret %q is not a Secret name: %s", o.secret, strings.Join(msgs, "; "))
	}
	return nil
}

func runCerts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseCertsFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.writeDir != "" {
		return o.ensureDir(stdout)
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	restConfig, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("could not load a kubeconfig (pass --kubeconfig, set KUBECONFIG, run in a pod, or use --write-dir for local files): %w", err)
	}
	restConfig.UserAgent = "sysctl-placement-certs/" + Version
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	return o.ensureCluster(ctx, client, stdout)
}

// parseCertsFlags reads and checks the flags of `certs`.
func parseCertsFlags(args []string, stderr io.Writer) (*certsOptions, error) {
	o := &certsOptions{}
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.namespace, "namespace", "sysctl-placement", "namespace of the webhook's Service and of the TLS Secret")
	fs.StringVar(&o.service, "service", "sysctl-placement", "the webhook's Service; the serving certificate names its in-cluster DNS names")
	fs.StringVar(&o.secret, "secret", "sysctl-placement-tls", "kubernetes.io/tls Secret that holds tls.crt, tls.key, ca.crt and ca.key")
	fs.StringVar(&o.mutatingWebhook, "mutating-webhook", "sysctl-placement", "MutatingWebhookConfiguration whose webhooks get the caBundle (empty: none)")
	fs.StringVar(&o.validatingWebhook, "validating-webhook", "sysctl-placement", "ValidatingWebhookConfiguration whose webhooks get the caBundle (empty: none)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster config)")
	fs.DurationVar(&o.validity, "validity", 8760*time.Hour, "lifetime of a new serving certificate")
	fs.DurationVar(&o.caValidity, "ca-validity", 87600*time.Hour, "lifetime of a new CA; it signs many serving certificates, so caBundle rarely changes")
	fs.DurationVar(&o.renewBefore, "renew-before", 720*time.Hour, "replace a certificate (serving or CA) that expires within this time")
	fs.StringVar(&o.writeDir, "write-dir", "", "instead of a cluster, keep ca.crt, ca.key, tls.crt and tls.key in this directory (for local runs)")
	fs.Var(&o.hosts, "host", "extra DNS name or IP address for the serving certificate, such as 127.0.0.1 (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: sysctl-placement certs [flags]\n\nCreates or renews the webhook's CA and serving certificate in a Secret and sets the\ncaBundle of both webhook configurations; changes nothing that is still good.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, exitError{code: 1}
	}
	if fs.NArg() > 0 {
		return nil, usageError("unexpected argument %q: certs takes flags only", fs.Arg(0))
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// ensureCluster brings the Secret and both webhook configurations' caBundle up to
// date, writing only what differs.
func (o *certsOptions) ensureCluster(ctx context.Context, client kubernetes.Interface, out io.Writer) error {
	secrets := client.CoreV1().Secrets(o.namespace)
	ref := o.namespace + "/" + o.secret
	current, err := secrets.Get(ctx, o.secret, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		current = nil
	case err != nil:
		return fmt.Errorf("could not read Secret %s: %w", ref, err)
	case current.Type != corev1.SecretTypeTLS:
		return fmt.Errorf("the Secret %s has type %s, not %s; delete it or pass another --secret", ref, current.Type, corev1.SecretTypeTLS)
	case current.Annotations[certManagerCertificateAnnotation] != "":
		// Two owners would replace each other's CA and break caBundle in turn.
		return fmt.Errorf("the Secret %s is managed by cert-manager (Certificate %s); leave it to cert-manager (deploy/overlays/cert-manager) or pass another --secret", ref, current.Annotations[certManagerCertificateAnnotation])
	}
	var data map[string][]byte
	if current != nil {
		data = current.Data
	}
	want, reasons, err := o.ensureMaterial(data, time.Now())
	if err != nil {
		return err
	}
	switch {
	case current == nil:
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      o.secret,
				Namespace: o.namespace,
				Labels:    map[string]string{"app.kubernetes.io/name": "sysctl-placement", "app.kubernetes.io/component": "certs"},
			},
			Type: corev1.SecretTypeTLS,
			Data: want,
		}
		if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: "sysctl-placement-certs"}); err != nil {
			return fmt.Errorf("could not create Secret %s: %w%s", ref, err, retryHint(err))
		}
		fmt.Fprintf(out, "Secret %s created: %s\n", ref, strings.Join(reasons, "; "))
	case len(reasons) > 0:
		updated := current.DeepCopy()
		if updated.Data == nil {
			updated.Data = map[string][]byte{}
		}
		for k, v := range want {
			updated.Data[k] = v
		}
		if _, err := secrets.Update(ctx, updated, metav1.UpdateOptions{FieldManager: "sysctl-placement-certs"}); err != nil {
			return fmt.Errorf("could not update Secret %s: %w%s", ref, err, retryHint(err))
		}
		fmt.Fprintf(out, "Secret %s updated: %s\n", ref, strings.Join(reasons, "; "))
	default:
		fmt.Fprintf(out, "Secret %s is up to date\n", ref)
	}

	bundle := want[keyCACert]
	if o.mutatingWebhook != "" {
		if err := o.patchMutating(ctx, client, bundle, out); err != nil {
			return err
		}
	}
	if o.validatingWebhook != "" {
		if err := o.patchValidating(ctx, client, bundle, out); err != nil {
			return err
		}
	}
	return nil
}

// retryHint tells the user what to do about errors that a second run fixes.
func retryHint(err error) string {
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return " (it changed while certs ran, perhaps another run; run certs again)"
	}
	return ""
}

func (o *certsOptions) patchMutating(ctx context.Context, client kubernetes.Interface, bundle []byte, out io.Writer) error {
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	kind, name := "MutatingWebhookConfiguration", o.mutatingWebhook
	cfg, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return webhookConfigError(kind, name, "--mutating-webhook", err)
	}
	entries := make([]webhookCA, len(cfg.Webhooks))
	for i, w := range cfg.Webhooks {
		entries[i] = webhookCA{name: w.Name, caBundle: w.ClientConfig.CABundle}
	}
	return patchCABundles(kind, name, entries, bundle, out, func(patch []byte) error {
		_, err := api.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "sysctl-placement-certs"})
		return err
	})
}

func (o *certsOptions) patchValidating(ctx context.Context, client kubernetes.Interface, bundle []byte, out io.Writer) error {
	api := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	kind, name := "ValidatingWebhookConfiguration", o.validatingWebhook
	cfg, err := api.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return webhookConfigError(kind, name, "--validating-webhook", err)
	}
	entries := make([]webhookCA, len(cfg.Webhooks))
	for i, w := range cfg.Webhooks {
		entries[i] = webhookCA{name: w.Name, caBundle: w.ClientConfig.CABundle}
	}
	return patchCABundles(kind, name, entries, bundle, out, func(patch []byte) error {
		_, err := api.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{FieldManager: "sysctl-placement-certs"})
		return err
	})
}

func webhookConfigError(kind, name, flagName string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the %s %s was not found: apply the manifests first (kubectl apply -k deploy/overlays/self-signed), or pass %s with its name, or %s='' to skip it", kind, name, flagName, flagName)
	}
	return fmt.Errorf("could not read %s %s: %w", kind, name, err)
}

// webhookCA is one webhook entry's name and current caBundle.
type webhookCA struct {
	name     string
	caBundle []byte
}

// patchCABundles sends one JSON patch that sets caBundle on every entry whose
// caBundle differs from bundle, and nothing when all agree. Each change is guarded by
// a test of the entry's name, so a configuration reordered since it was read fails
// the patch instead of getting the bundle on the wrong entry.
func patchCABundles(kind, name string, entries []webhookCA, bundle []byte, out io.Writer, patch func([]byte) error) error {
	var ops []map[string]any
	for i, e := range entries {
		if bytes.Equal(e.caBundle, bundle) {
			continue
		}
		ops = append(ops,
			map[string]any{"op": "test", "path": fmt.Sprintf("/webhooks/%d/name", i), "value": e.name},
			// add sets the member whether or not it exists; replace needs it to.
			map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), "value": bundle},
		)
	}
	if len(ops) == 0 {
		fmt.Fprintf(out, "%s %s: caBundle of all %d webhooks is up to date\n", kind, name, len(entries))
		return nil
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("could not encode the caBundle patch: %w", err)
	}
	if err := patch(body); err != nil {
		return fmt.Errorf("could not set caBundle of %s %s: %w; run certs again", kind, name, err)
	}
	fmt.Fprintf(out, "%s %s: caBundle set on %d of %d webhooks\n", kind, name, len(ops)/2, len(entries))
	return nil
}

// ensureMaterial returns the TLS material to keep, given what is kept now (nil or
// partial when there is none), and the reasons for each change (none: current is
// still good and is returned unchanged).
//
// The CA is replaced when it is missing, unusable, expires within --renew-before, or
// would expire before a serving certificate it has to issue. The serving certificate
// is replaced when it is missing, unusable, not signed by the CA, names other hosts
// than the Service's and --host, or expires within --renew-before. A replaced CA stays
// in ca.crt (after the current one) until it expires, so the API server keeps
// trusting the old serving certificate until the kubelet has swapped the Secret volume.
func (o *certsOptions) ensureMaterial(current map[string][]byte, now time.Time) (map[string][]byte, []string, error) {
	var reasons []string
	ca, problem := usableCA(current, now, o.renewBefore)
	if problem != "" {
		reasons = append(reasons, problem)
		ca = nil
	}
	serving := ""
	if ca != nil {
		serving = o.servingProblem(current, ca, now)
		if serving != "" && ca.Certificate().NotAfter.Before(now.Add(o.validity+time.Minute)) {
			reasons = append(reasons, fmt.Sprintf("the CA expires at %s, before a new serving certificate would", ca.Certificate().NotAfter.Format(time.RFC3339)))
			ca = nil
		}
	}
	if ca == nil {
		var err error
		if ca, err = certs.NewCA(caCommonName, o.caValidity); err != nil {
			return nil, nil, err
		}
		serving = "a new CA signs a new serving certificate"
	}
	want := map[string][]byte{
		keyCACert:  ca.CertPEM(),
		keyCAKey:   ca.KeyPEM(),
		keyTLSCert: current[keyTLSCert],
		keyTLSKey:  current[keyTLSKey],
	}
	if serving != "" {
		reasons = append(reasons, serving)
		certPEM, keyPEM, err := ca.IssueServing(o.service, o.namespace, o.extraDNS, o.extraIPs, o.validity)
		if err != nil {
			return nil, nil, err
		}
		want[keyTLSCert], want[keyTLSKey] = certPEM, keyPEM
	}
	// ca.crt: the CA, then earlier CAs that may still have signed a serving
	// certificate in use somewhere, until they expire.
	bundle := []*x509.Certificate{ca.Certificate()}
	if old, err := cert.ParseCertsPEM(current[keyCACert]); err == nil {
		for _, c := range old {
			if c.IsCA && now.Before(c.NotAfter) && !slices.ContainsFunc(bundle, c.Equal) {
				bundle = append(bundle, c)
			}
		}
	}
	pem, err := cert.EncodeCertificates(bundle...)
	if err != nil {
		return nil, nil, fmt.Errorf("could not encode ca.crt: %w", err)
	}
	want[keyCACert] = pem
	if len(reasons) == 0 && !bytes.Equal(pem, current[keyCACert]) {
		reasons = append(reasons, "ca.crt had expired or foreign certificates; it now holds the CA and the earlier CAs still valid")
	}
	if len(reasons) == 0 {
		return current, nil, nil
	}
	return want, reasons, nil
}

// usableCA loads the CA kept in current, or says why it cannot be used.
func usableCA(current map[string][]byte, now time.Time, renewBefore time.Duration) (*certs.CA, string) {
	if len(current[keyCACert]) == 0 || len(current[keyCAKey]) == 0 {
		return nil, "no CA yet"
	}
	chain, err := cert.ParseCertsPEM(current[keyCACert])
	if err != nil {
		return nil, fmt.Sprintf("ca.crt is unusable (%v)", err)
	}
	first, err := cert.EncodeCertificates(chain[0])
	if err != nil {
		return nil, fmt.Sprintf("ca.crt is unusable (%v)", err)
	}
	ca, err := certs.LoadCA(first, current[keyCAKey])
	if err != nil {
		return nil, fmt.Sprintf("the CA is unusable (%v)", err)
	}
	if notAfter := ca.Certificate().NotAfter; notAfter.Before(now.Add(renewBefore)) {
		return nil, fmt.Sprintf("the CA expires at %s, within --renew-before %s", notAfter.Format(time.RFC3339), renewBefore)
	}
	return ca, ""
}

// servingProblem says why the serving certificate in current must be replaced, or
// returns "" when it is good.
func (o *certsOptions) servingProblem(current map[string][]byte, ca *certs.CA, now time.Time) string {
	if len(current[keyTLSCert]) == 0 || len(current[keyTLSKey]) == 0 {
		return "no serving certificate yet"
	}
	pair, err := tls.X509KeyPair(current[keyTLSCert], current[keyTLSKey])
	if err != nil {
		return fmt.Sprintf("the serving certificate and key are unusable (%v)", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Sprintf("the serving certificate is unusable (%v)", err)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Sprintf("the serving certificate does not verify against the CA (%v)", err)
	}
	if want, got := o.hostNames(), certHostNames(leaf); !slices.Equal(want, got) {
		return fmt.Sprintf("the serving certificate names %s, not %s", strings.Join(got, ","), strings.Join(want, ","))
	}
	if leaf.NotAfter.Before(now.Add(o.renewBefore)) {
		return fmt.Sprintf("the serving certificate expires at %s, within --renew-before %s", leaf.NotAfter.Format(time.RFC3339), o.renewBefore)
	}
	return ""
}

// hostNames are the names a serving certificate must carry, sorted: those
// certs.CA.IssueServing gives every certificate for the Service, and --host.
func (o *certsOptions) hostNames() []string {
	s, ns := o.service, o.namespace
	names := []string{s, s + "." + ns, s + "." + ns + ".svc", s + "." + ns + ".svc.cluster.local"}
	names = append(names, o.extraDNS...)
	for _, ip := range o.extraIPs {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func certHostNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// ensureDir is ensureCluster for --write-dir: the same material in files, and no
// caBundle (point a local client at ca.crt instead).
func (o *certsOptions) ensureDir(out io.Writer) error {
	current := map[string][]byte{}
	for _, key := range []string{keyCACert, keyCAKey, keyTLSCert, keyTLSKey} {
		data, err := os.ReadFile(filepath.Join(o.writeDir, key))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("could not read %s: %w; fix its permissions or pass another --write-dir", filepath.Join(o.writeDir, key), err)
		default:
			current[key] = data
		}
	}
	want, reasons, err := o.ensureMaterial(current, time.Now())
	if err != nil {
		return err
	}
	if len(reasons) == 0 {
		fmt.Fprintf(out, "%s is up to date\n", o.writeDir)
		return nil
	}
	if err := os.MkdirAll(o.writeDir, 0o700); err != nil {
		return fmt.Errorf("could not create --write-dir: %w", err)
	}
	// Keys last: a reader that sees the new certificate with the old key refuses the
	// pair and keeps the old one (certs.Reloader does) until the key follows.
	for _, f := range []struct {
		key  string
		mode os.FileMode
	}{{keyCACert, 0o644}, {keyTLSCert, 0o644}, {keyCAKey, 0o600}, {keyTLSKey, 0o600}} {
		if bytes.Equal(current[f.key], want[f.key]) {
			continue
		}
		if err := writeFileAtomically(filepath.Join(o.writeDir, f.key), want[f.key], f.mode); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%s updated: %s\n", o.writeDir, strings.Join(reasons, "; "))
	return nil
}

// writeFileAtomically replaces path with data in one rename, so a reader never sees
// a half-written PEM file.
func writeFileAtomically(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	return nil
}
