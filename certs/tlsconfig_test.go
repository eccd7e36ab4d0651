package certs

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startWebhook serves a fresh serving certificate from ca through
// ServerTLSConfig, requiring client certificates from clientCA if it is set.
func startWebhook(t *testing.T, ca, clientCA *CA) string {
	t.Helper()
	pair := newServingPair(t, ca)
	vol := newSecretVolume(t, pair.certPEM, pair.keyPEM)
	r, err := NewReloader(ReloaderConfig{CertFile: vol.certFile(), KeyFile: vol.keyFile()})
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	var clientCAFile string
	if clientCA != nil {
		clientCAFile = filepath.Join(t.TempDir(), "client-ca.crt")
		if err := os.WriteFile(clientCAFile, clientCA.CertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := ServerTLSConfig(r, clientCAFile)
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	return startServer(t, cfg)
}

func TestServerTLSConfig(t *testing.T) {
	t.Run("client CA mode rejects clients without a certificate from that CA", func(t *testing.T) {
		servingCA, clientCA, otherCA := newTestCA(t, "serving-ca"), newTestCA(t, "client-ca"), newTestCA(t, "other-ca")
		addr := startWebhook(t, servingCA, clientCA)

		tests := map[string]struct {
			clientCert *tls.Certificate
			wantOK     bool
		}{
			"a client without a certificate is rejected":                 {},
			"a client with a certificate from another CA is rejected":    {clientCert: clientCertificate(t, otherCA)},
			"a client with a certificate from the client CA is accepted": {clientCert: clientCertificate(t, clientCA), wantOK: true},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				tlsCfg := &tls.Config{RootCAs: poolOf(servingCA)}
				if tc.clientCert != nil {
					tlsCfg.Certificates = []tls.Certificate{*tc.clientCert}
				}
				// HTTP/1.1, because HTTP/2 hides the handshake's alert behind
				// "client conn could not be established".
				transport := &http.Transport{TLSClientConfig: tlsCfg}
				defer transport.CloseIdleConnections()
				_, err := get(&http.Client{Transport: transport, Timeout: waitTimeout}, "https://"+addr+"/")
				switch {
				case tc.wantOK && err != nil:
					t.Errorf("request failed: %v", err)
				case !tc.wantOK && err == nil:
					t.Error("request succeeded; want it rejected")
				case !tc.wantOK && !strings.Contains(err.Error(), "tls:"):
					t.Errorf("request failed with %v; want a TLS error", err)
				}
			})
		}
	})

	t.Run("outdated clients are refused", func(t *testing.T) {
		ca := newTestCA(t, "ca")
		addr := startWebhook(t, ca, nil)

		tests := map[string]struct {
			client *tls.Config
			wantOK bool
		}{
			"a TLS 1.1 client is refused": {
				client: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			},
			"a TLS 1.2 client offering only CBC suites is refused": {
				client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
					tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
					tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
				}},
			},
			"a TLS 1.2 client offering ECDHE with AES-GCM is accepted": {
				client: &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
				wantOK: true,
			},
			"a TLS 1.3 client is accepted": {
				client: &tls.Config{MinVersion: tls.VersionTLS13},
				wantOK: true,
			},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				tc.client.RootCAs = poolOf(ca)
				conn, err := tls.Dial("tcp", addr, tc.client)
				if err == nil {
					_ = conn.Close()
				}
				switch {
				case tc.wantOK && err != nil:
					t.Errorf("handshake failed: %v", err)
				case !tc.wantOK && err == nil:
					t.Errorf("handshake succeeded with %s; want it refused", tls.VersionName(conn.ConnectionState().Version))
				}
			})
		}
	})

	t.Run("missing inputs are refused with a hint", func(t *testing.T) {
		if _, err := ServerTLSConfig(nil, ""); err == nil || !strings.Contains(err.Error(), "certs.NewReloader") {
			t.Errorf("nil reloader: error %v does not say how to build one", err)
		}

		ca := newTestCA(t, "ca")
		pair := newServingPair(t, ca)
		vol := newSecretVolume(t, pair.certPEM, pair.keyPEM)
		r, err := NewReloader(ReloaderConfig{CertFile: vol.certFile(), KeyFile: vol.keyFile()})
		if err != nil {
			t.Fatal(err)
		}
		missing := filepath.Join(t.TempDir(), "missing.crt")
		_, err = ServerTLSConfig(r, missing)
		if err == nil {
			t.Fatal("a missing client CA file was accepted")
		}
		for _, want := range []string{missing, "check --client-ca-file"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	})
}

// clientCertificate issues a client certificate, like the one the API
// server presents to webhooks, from ca.
func clientCertificate(t *testing.T, ca *CA) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, time.Hour)
	if err != nil {
		t.Fatalf("issue client certificate: %v", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}
