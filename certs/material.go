package certs

// This file is the certificate policy of `sysctl-placement certs`: given the TLS
// material kept now, the names the serving certificate must carry and the time, what
// to keep and what to replace, and why. It reads no cluster and no file, so every rule
// is tested on its own.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/cert"
)

// Keys of the TLS material, as in a kubernetes.io/tls Secret and as file names. tls.crt,
// tls.key and ca.crt are the kubernetes.io/tls conventions (cert-manager writes the
// same); ca.key keeps the CA so that a renewed serving certificate needs no new caBundle.
const (
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
	KeyTLSCert = corev1.TLSCertKey
	KeyTLSKey  = corev1.TLSPrivateKeyKey
)

// MaterialPolicy says what good material is: the names the serving certificate carries,
// how long new certificates live and how early they are replaced.
type MaterialPolicy struct {
	// Service and Namespace name the webhook's Service; the serving certificate carries
	// ServiceDNSNames of them.
	Service, Namespace string
	// ExtraDNS and ExtraIPs are further names of the serving certificate.
	ExtraDNS []string
	ExtraIPs []net.IP
	// CACommonName names a new CA.
	CACommonName string
	// Validity is the lifetime of a new serving certificate, CAValidity of a new CA.
	Validity, CAValidity time.Duration
	// RenewBefore: a certificate (serving or CA) expiring within it is replaced.
	RenewBefore time.Duration
}

// EnsureMaterial returns the TLS material to keep, given what is kept now (nil or
// partial when there is none), and the reasons for each change (none: current is still
// good and is returned unchanged).
//
// The CA is replaced when it is missing, unusable, expires within RenewBefore, or would
// expire before a serving certificate it has to issue. The serving certificate is
// replaced when it is missing, unusable, not signed by the CA, names other hosts than
// the policy's, or expires within RenewBefore. A replaced CA stays in ca.crt (after the
// current one) until it expires, so the API server keeps trusting the old serving
// certificate until the kubelet has swapped the Secret volume.
func EnsureMaterial(current map[string][]byte, p MaterialPolicy, now time.Time) (map[string][]byte, []string, error) {
	var reasons []string
	ca, problem := usableCA(current, now, p.RenewBefore)
	if problem != "" {
		reasons = append(reasons, problem)
		ca = nil
	}
	serving := ""
	if ca != nil {
		serving = p.servingProblem(current, ca, now)
		if serving != "" && ca.Certificate().NotAfter.Before(now.Add(p.Validity+time.Minute)) {
			reasons = append(reasons, fmt.Sprintf("the CA expires at %s, before a new serving certificate would", ca.Certificate().NotAfter.Format(time.RFC3339)))
			ca = nil
		}
	}
	if ca == nil {
		var err error
		if ca, err = NewCA(p.CACommonName, p.CAValidity); err != nil {
			return nil, nil, err
		}
		serving = "a new CA signs a new serving certificate"
	}
	want := map[string][]byte{
		KeyCACert:  ca.CertPEM(),
		KeyCAKey:   ca.KeyPEM(),
		KeyTLSCert: current[KeyTLSCert],
		KeyTLSKey:  current[KeyTLSKey],
	}
	if serving != "" {
		reasons = append(reasons, serving)
		certPEM, keyPEM, err := ca.IssueServing(p.Service, p.Namespace, p.ExtraDNS, p.ExtraIPs, p.Validity)
		if err != nil {
			return nil, nil, err
		}
		want[KeyTLSCert], want[KeyTLSKey] = certPEM, keyPEM
	}
	// ca.crt: the CA, then earlier CAs that may still have signed a serving
	// certificate in use somewhere, until they expire.
	bundle := []*x509.Certificate{ca.Certificate()}
	if old, err := cert.ParseCertsPEM(current[KeyCACert]); err == nil {
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
	want[KeyCACert] = pem
	if len(reasons) == 0 && !bytes.Equal(pem, current[KeyCACert]) {
		reasons = append(reasons, "ca.crt had expired or foreign certificates; it now holds the CA and the earlier CAs still valid")
	}
	if len(reasons) == 0 {
		return current, nil, nil
	}
	return want, reasons, nil
}

// usableCA loads the CA kept in current, or says why it cannot be used.
func usableCA(current map[string][]byte, now time.Time, renewBefore time.Duration) (*CA, string) {
	if len(current[KeyCACert]) == 0 || len(current[KeyCAKey]) == 0 {
		return nil, "no CA yet"
	}
	chain, err := cert.ParseCertsPEM(current[KeyCACert])
	if err != nil {
		return nil, fmt.Sprintf("ca.crt is unusable (%v)", err)
	}
	first, err := cert.EncodeCertificates(chain[0])
	if err != nil {
		return nil, fmt.Sprintf("ca.crt is unusable (%v)", err)
	}
	ca, err := LoadCA(first, current[KeyCAKey])
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
func (p MaterialPolicy) servingProblem(current map[string][]byte, ca *CA, now time.Time) string {
	if len(current[KeyTLSCert]) == 0 || len(current[KeyTLSKey]) == 0 {
		return "no serving certificate yet"
	}
	pair, err := tls.X509KeyPair(current[KeyTLSCert], current[KeyTLSKey])
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
	if want, got := p.hostNames(), certHostNames(leaf); !slices.Equal(want, got) {
		return fmt.Sprintf("the serving certificate names %s, not %s", strings.Join(got, ","), strings.Join(want, ","))
	}
	if leaf.NotAfter.Before(now.Add(p.RenewBefore)) {
		return fmt.Sprintf("the serving certificate expires at %s, within --renew-before %s", leaf.NotAfter.Format(time.RFC3339), p.RenewBefore)
	}
	return ""
}

// hostNames are the names a serving certificate must carry, sorted: the Service's and
// the extra ones, as IssueServing writes them.
func (p MaterialPolicy) hostNames() []string {
	names := append(ServiceDNSNames(p.Service, p.Namespace), p.ExtraDNS...)
	for _, ip := range p.ExtraIPs {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// certHostNames are the DNS and IP names a certificate carries, sorted.
func certHostNames(c *x509.Certificate) []string {
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return slices.Compact(names)
}
