package main

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sysctl-placement/sysctl-placement/certs"
)

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

func TestCAKey(t *testing.T) {
	// The Secret the webhook mounts holds no key that can sign: a compromised replica, or
	// its node (a kubelet reads a mounted Secret whole), must not yield the CA.
	t.Run("the CA key is kept out of the secret the webhook mounts", func(t *testing.T) {
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
	})
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

func TestCABundle(t *testing.T) {
	t.Run("certs sets the CA bundle of every webhook in both configurations", func(t *testing.T) {
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
	})

	t.Run("only the webhooks whose CA bundle differs are patched", func(t *testing.T) {
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
	})
}
