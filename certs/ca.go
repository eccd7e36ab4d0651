package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// clockSkew backdates every certificate so that an API server whose clock is
// a little behind ours does not see a certificate that is not yet valid.
const clockSkew = 5 * time.Minute

// CA is a certificate authority that signs the webhook's serving
// certificates. Its certificate is what goes into the webhook
// configurations' caBundle; keep it (for example in a Secret, see CertPEM,
// KeyPEM and LoadCA) so that a new serving certificate does not also need a
// new caBundle.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

// NewCA makes a self-signed CA with an ECDSA P-256 key, valid for validity
// from now.
//
// client-go's cert.NewSelfSignedCACert is not used because it fixes the
// lifetime at ten years.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, errors.New("the CA needs a common name; pass a non-empty name such as \"sysctl-placement-ca\"")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("CA validity must be positive, got %s; pass a duration such as 87600h", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("could not generate the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew).UTC(),
		NotAfter:              now.Add(validity).UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// The CA signs leaves only; no intermediate may hang below it.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("could not self-sign the CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("could not parse the CA certificate just made: %w", err)
	}
	return newCA(caCert, key)
}

// LoadCA rebuilds a CA from the PEM that CertPEM and KeyPEM returned, so a
// CA kept in a Secret can sign new serving certificates without changing the
// caBundle. The key may be ECDSA or RSA, in SEC 1, PKCS #1 or PKCS #8 form.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("could not parse the CA certificate: %w; pass the PEM that CA.CertPEM returned", err)
	}
	caCert := certs[0]
	if !caCert.IsCA || caCert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certificate %q is not a CA (it may not sign certificates); pass the CA certificate, not a serving certificate", caCert.Subject.CommonName)
	}
	if now := time.Now(); now.After(caCert.NotAfter) {
		return nil, fmt.Errorf("CA certificate %q expired at %s; make a new CA and update the webhook configurations' caBundle", caCert.Subject.CommonName, caCert.NotAfter.Format(time.RFC3339))
	}
	parsed, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("could not parse the CA private key: %w; pass the PEM that CA.KeyPEM returned", err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the CA private key is a %T, which cannot sign; use an ECDSA or RSA key", parsed)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(caCert.PublicKey) {
		return nil, fmt.Errorf("the CA private key does not belong to CA certificate %q; pass the key that was stored with this certificate", caCert.Subject.CommonName)
	}
	return newCA(caCert, key)
}

func newCA(caCert *x509.Certificate, key crypto.Signer) (*CA, error) {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, fmt.Errorf("could not encode the CA private key: %w", err)
	}
	certPEM, err := cert.EncodeCertificates(caCert)
	if err != nil {
		return nil, fmt.Errorf("could not encode the CA certificate: %w", err)
	}
	return &CA{cert: caCert, key: key, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// CertPEM returns the CA certificate in PEM form: the webhook
// configurations' caBundle, and what LoadCA takes back.
func (ca *CA) CertPEM() []byte { return slices.Clone(ca.certPEM) }

// KeyPEM returns the CA private key in PEM form. Store it only where the
// webhook's own Secret is stored: whoever has it can impersonate the webhook.
func (ca *CA) KeyPEM() []byte { return slices.Clone(ca.keyPEM) }

// Certificate returns the parsed CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// IssueServing signs a serving certificate, with a new ECDSA P-256 key, for
// the Service service in namespace. Its DNS names are ServiceDNSNames plus
// extraDNS; extraIPs become IP names (for example 127.0.0.1 for local runs).
func (ca *CA) IssueServing(service, namespace string, extraDNS []string, extraIPs []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if msgs := validation.IsDNS1035Label(service); len(msgs) > 0 {
		return nil, nil, fmt.Errorf("service name %q is not valid: %s; pass the name of the webhook's Service", service, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return nil, nil, fmt.Errorf("namespace %q is not valid: %s; pass the namespace of the webhook's Service", namespace, strings.Join(msgs, "; "))
	}
	dnsNames := ServiceDNSNames(service, namespace)
	for _, name := range extraDNS {
		if strings.TrimSpace(name) == "" {
			return nil, nil, errors.New("an extra DNS name is empty; remove it or give the name the webhook is reached by")
		}
		if !slices.Contains(dnsNames, name) {
			dnsNames = append(dnsNames, name)
		}
	}
	var ips []net.IP
	for _, ip := range extraIPs {
		if ip == nil {
			return nil, nil, errors.New("an extra IP address is empty; remove it or give the address the webhook is reached by")
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: service + "." + namespace + ".svc"},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		// ECDSA keys sign the handshake; they never encipher keys.
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	return ca.issue(tmpl, validity)
}

// ServiceDNSNames are the four names a Service answers to inside the cluster:
// <service>, <service>.<namespace>, <service>.<namespace>.svc and
// <service>.<namespace>.svc.cluster.local.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// issue fills in the serial, lifetime and basic constraints of tmpl, signs
// it with a new P-256 key and returns the certificate and key in PEM form.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("certificate validity must be positive, got %s; pass a duration such as 8760h", validity)
	}
	now := time.Now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		// A leaf that outlives its CA would stop verifying before it expires,
		// which is harder to diagnose than refusing now.
		return nil, nil, fmt.Errorf("a certificate valid for %s would outlive its CA, which expires at %s; ask for a shorter validity or make a new CA", validity, ca.cert.NotAfter.Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("could not generate a certificate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-clockSkew).UTC()
	tmpl.NotAfter = notAfter.UTC()
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("could not sign the certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("could not parse the certificate just signed: %w", err)
	}
	certPEM, err = cert.EncodeCertificates(leaf)
	if err != nil {
		return nil, nil, fmt.Errorf("could not encode the certificate: %w", err)
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("could not encode the certificate key: %w", err)
	}
	return certPEM, keyPEM, nil
}

// newSerial returns a random positive 128-bit serial number, as RFC 5280
// and the CA/Browser Forum ask (at least 64 bits of entropy, at most 20 octets).
func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("could not generate a certificate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
