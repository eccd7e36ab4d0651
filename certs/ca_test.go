package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCA(t *testing.T) {
	t.Run("a serving certificate has the Service names and verifies against its CA", func(t *testing.T) {
		ca := newTestCA(t, "sysctl-placement-ca")
		certPEM, keyPEM, err := ca.IssueServing("webhook", "sysctl-placement-system", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
		if err != nil {
			t.Fatalf("IssueServing: %v", err)
		}
		leaf := leafOf(t, certPEM)

		wantDNS := []string{
			"webhook",
			"webhook.sysctl-placement-system",
			"webhook.sysctl-placement-system.svc",
			"webhook.sysctl-placement-system.svc.cluster.local",
			"localhost",
		}
		if !slices.Equal(leaf.DNSNames, wantDNS) {
			t.Errorf("DNS names = %q, want %q", leaf.DNSNames, wantDNS)
		}
		if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
			t.Errorf("IP addresses = %v, want [127.0.0.1]", leaf.IPAddresses)
		}
		if leaf.IsCA {
			t.Error("serving certificate is a CA; it must not be")
		}
		pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("public key = %T, want ECDSA P-256", leaf.PublicKey)
		}

		for _, name := range append(wantDNS, "127.0.0.1") {
			if _, err := leaf.Verify(x509.VerifyOptions{
				DNSName:   name,
				Roots:     poolOf(ca),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err != nil {
				t.Errorf("certificate does not verify for %q against its CA: %v", name, err)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "webhook.sysctl-placement-system.svc", Roots: poolOf(newTestCA(t, "other"))}); err == nil {
			t.Error("certificate verifies against an unrelated CA")
		}
		if _, err := LoadCA(certPEM, keyPEM); err == nil {
			t.Error("LoadCA accepted a serving certificate as a CA")
		}
	})

	t.Run("a CA loaded from its PEM issues certificates the original CA verifies", func(t *testing.T) {
		original := newTestCA(t, "sysctl-placement-ca")
		loaded, err := LoadCA(original.CertPEM(), original.KeyPEM())
		if err != nil {
			t.Fatalf("LoadCA: %v", err)
		}
		if !loaded.Certificate().Equal(original.Certificate()) {
			t.Fatal("loaded CA certificate differs from the original")
		}
		certPEM, _, err := loaded.IssueServing("webhook", "default", nil, nil, time.Hour)
		if err != nil {
			t.Fatalf("IssueServing: %v", err)
		}
		if _, err := leafOf(t, certPEM).Verify(x509.VerifyOptions{DNSName: "webhook.default.svc", Roots: poolOf(original)}); err != nil {
			t.Errorf("certificate from the loaded CA does not verify against the original: %v", err)
		}
	})

	t.Run("bad CA input is refused with a hint", func(t *testing.T) {
		ca := newTestCA(t, "ca")
		other := newTestCA(t, "other")
		tests := map[string]struct {
			run  func() error
			want string
		}{
			"a CA without a common name": {
				run:  func() error { _, err := NewCA(" ", time.Hour); return err },
				want: "needs a common name",
			},
			"a CA with no validity": {
				run:  func() error { _, err := NewCA("ca", 0); return err },
				want: "validity must be positive",
			},
			"a CA certificate with another CA's key": {
				run:  func() error { _, err := LoadCA(ca.CertPEM(), other.KeyPEM()); return err },
				want: "does not belong to CA certificate",
			},
			"a CA certificate that is not PEM": {
				run:  func() error { _, err := LoadCA([]byte("not pem"), ca.KeyPEM()); return err },
				want: "could not parse the CA certificate",
			},
			"a CA key that is not PEM": {
				run:  func() error { _, err := LoadCA(ca.CertPEM(), []byte("not pem")); return err },
				want: "could not parse the CA private key",
			},
			"a service name that is not a DNS label": {
				run: func() error {
					_, _, err := ca.IssueServing("Web_Hook", "default", nil, nil, time.Hour)
					return err
				},
				want: `service name "Web_Hook" is not valid`,
			},
			"a namespace that is not a DNS label": {
				run: func() error {
					_, _, err := ca.IssueServing("webhook", "", nil, nil, time.Hour)
					return err
				},
				want: `namespace "" is not valid`,
			},
			"a serving certificate that would outlive its CA": {
				run: func() error {
					_, _, err := ca.IssueServing("webhook", "default", nil, nil, 48*time.Hour)
					return err
				},
				want: "would outlive its CA",
			},
			"an empty extra DNS name": {
				run: func() error {
					_, _, err := ca.IssueServing("webhook", "default", []string{""}, nil, time.Hour)
					return err
				},
				want: "extra DNS name is empty",
			},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				err := tc.run()
				if err == nil {
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not contain %q", err, tc.want)
				}
			})
		}
	})

	t.Run("serving certificates have distinct serials", func(t *testing.T) {
		ca := newTestCA(t, "ca")
		a := newServingPair(t, ca)
		b := newServingPair(t, ca)
		if a.serial.Cmp(b.serial) == 0 || a.serial.Cmp(ca.Certificate().SerialNumber) == 0 {
			t.Errorf("serials repeat: %s, %s, CA %s", a.serial, b.serial, ca.Certificate().SerialNumber)
		}
	})
}
