package certs

import (
	"bytes"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/cert"
)

// testPolicy is the policy of `certs` with its default flags and one extra name.
var testPolicy = MaterialPolicy{
	Service: "sysctl-placement", Namespace: "sysctl-placement",
	ExtraDNS: []string{"localhost"}, ExtraIPs: []net.IP{net.ParseIP("127.0.0.1")},
	CACommonName: "test-ca", Validity: 8760 * time.Hour, CAValidity: 87600 * time.Hour, RenewBefore: 720 * time.Hour,
}

// materialFrom is what a Secret holds after ca issued a serving certificate for p,
// valid for validity.
func materialFrom(t *testing.T, ca *CA, p MaterialPolicy, validity time.Duration) map[string][]byte {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServing(p.Service, p.Namespace, p.ExtraDNS, p.ExtraIPs, validity)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{KeyCACert: ca.CertPEM(), KeyCAKey: ca.KeyPEM(), KeyTLSCert: certPEM, KeyTLSKey: keyPEM}
}

func caWithValidity(t *testing.T, validity time.Duration) *CA {
	t.Helper()
	ca, err := NewCA("test-ca", validity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// verifies checks that want's serving certificate verifies for the Service against
// want's ca.crt at now.
func verifies(t *testing.T, want map[string][]byte, now time.Time) {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(want[KeyCACert]) {
		t.Fatal("ca.crt holds no certificate")
	}
	if _, err := leafOf(t, want[KeyTLSCert]).Verify(x509.VerifyOptions{DNSName: "sysctl-placement.sysctl-placement.svc", Roots: roots, CurrentTime: now}); err != nil {
		t.Errorf("the serving certificate does not verify against ca.crt: %v", err)
	}
}

func TestEnsureMaterial(t *testing.T) {
	now := time.Now()
	t.Run("no material gets a CA and a serving certificate for the Service", func(t *testing.T) {
		want, reasons, err := EnsureMaterial(nil, testPolicy, now)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(reasons, []string{"no CA yet", "a new CA signs a new serving certificate"}) {
			t.Errorf("reasons = %q", reasons)
		}
		verifies(t, want, now)
	})
	t.Run("good material is returned unchanged with no reason", func(t *testing.T) {
		current := materialFrom(t, caWithValidity(t, 87600*time.Hour), testPolicy, 8760*time.Hour)
		want, reasons, err := EnsureMaterial(current, testPolicy, now)
		if err != nil || len(reasons) != 0 {
			t.Fatalf("reasons %q, err %v; want none", reasons, err)
		}
		for k, v := range current {
			if !bytes.Equal(want[k], v) {
				t.Errorf("%s changed", k)
			}
		}
	})
	t.Run("the same material is renewed once now is within RenewBefore of its end", func(t *testing.T) {
		ca := caWithValidity(t, 87600*time.Hour)
		current := materialFrom(t, ca, testPolicy, 8760*time.Hour)
		later := now.Add(8760*time.Hour - 240*time.Hour)
		want, reasons, err := EnsureMaterial(current, testPolicy, later)
		if err != nil {
			t.Fatal(err)
		}
		if len(reasons) != 1 || !strings.Contains(reasons[0], "within --renew-before") {
			t.Errorf("reasons = %q; want the serving certificate's end", reasons)
		}
		if bytes.Equal(want[KeyTLSCert], current[KeyTLSCert]) || !bytes.Equal(want[KeyCAKey], current[KeyCAKey]) {
			t.Errorf("want a new serving certificate from the same CA")
		}
	})
	t.Run("a serving certificate for other names is replaced by the same CA", func(t *testing.T) {
		ca := caWithValidity(t, 87600*time.Hour)
		other := testPolicy
		other.Service = "old-webhook"
		current := materialFrom(t, ca, other, 8760*time.Hour)
		want, reasons, err := EnsureMaterial(current, testPolicy, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(reasons) != 1 || !strings.Contains(reasons[0], "old-webhook") {
			t.Errorf("reasons = %q; want the old names", reasons)
		}
		if !bytes.Equal(want[KeyCAKey], current[KeyCAKey]) {
			t.Errorf("the CA was replaced although only the names changed")
		}
		verifies(t, want, now)
	})
	t.Run("the names wanted are those IssueServing writes, in any order", func(t *testing.T) {
		current := materialFrom(t, caWithValidity(t, 87600*time.Hour), testPolicy, 8760*time.Hour)
		reordered := testPolicy
		reordered.ExtraDNS = []string{"localhost", "sysctl-placement.sysctl-placement.svc"}
		if _, reasons, _ := EnsureMaterial(current, reordered, now); len(reasons) != 0 {
			t.Errorf("reasons = %q; a name the Service already has changes nothing", reasons)
		}
	})
	t.Run("a CA expiring within RenewBefore is replaced and stays in ca.crt", func(t *testing.T) {
		old := caWithValidity(t, 240*time.Hour)
		current := materialFrom(t, old, testPolicy, 100*time.Hour)
		want, reasons, err := EnsureMaterial(current, testPolicy, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(reasons) != 2 || !strings.Contains(reasons[0], "the CA expires") {
			t.Errorf("reasons = %q", reasons)
		}
		bundle, err := cert.ParseCertsPEM(want[KeyCACert])
		if err != nil {
			t.Fatal(err)
		}
		if len(bundle) != 2 || !bundle[1].Equal(old.Certificate()) {
			t.Fatalf("ca.crt holds %d certificates; want the new CA, then the old one", len(bundle))
		}
		verifies(t, want, now)
		verifies(t, current, now) // the old pair, still served until the volume swaps
	})
	t.Run("a CA ending before a new serving certificate would is replaced", func(t *testing.T) {
		ca := caWithValidity(t, 2000*time.Hour) // beyond RenewBefore, short of Validity
		current := materialFrom(t, ca, testPolicy, 100*time.Hour)
		_, reasons, err := EnsureMaterial(current, testPolicy, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(reasons) != 2 || !strings.Contains(reasons[0], "before a new serving certificate would") {
			t.Errorf("reasons = %q", reasons)
		}
	})
	t.Run("earlier CAs leave ca.crt once they have expired", func(t *testing.T) {
		ca := caWithValidity(t, 87600*time.Hour)
		current := materialFrom(t, ca, testPolicy, 8760*time.Hour)
		current[KeyCACert] = append(ca.CertPEM(), caWithValidity(t, 10*time.Hour).CertPEM()...)
		want, reasons, err := EnsureMaterial(current, testPolicy, now.Add(20*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(reasons) != 1 || !strings.Contains(reasons[0], "ca.crt had expired") {
			t.Errorf("reasons = %q", reasons)
		}
		if !bytes.Equal(want[KeyCACert], ca.CertPEM()) {
			t.Errorf("ca.crt still holds the expired CA")
		}
	})
	t.Run("unusable material says what is wrong", func(t *testing.T) {
		ca := caWithValidity(t, 87600*time.Hour)
		current := materialFrom(t, ca, testPolicy, 8760*time.Hour)
		current[KeyTLSKey] = caWithValidity(t, time.Hour).KeyPEM()
		_, reasons, err := EnsureMaterial(current, testPolicy, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(reasons) != 1 || !strings.Contains(reasons[0], "unusable") {
			t.Errorf("reasons = %q", reasons)
		}
	})
}
