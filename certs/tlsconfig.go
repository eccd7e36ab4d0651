package certs

import (
	"crypto/tls"
	"errors"
	"fmt"

	"k8s.io/client-go/util/cert"
)

// modernTLS12CipherSuites are the TLS 1.2 suites with forward secrecy
// (ECDHE) and authenticated encryption (AEAD); CBC and static-RSA suites are
// left out. TLS 1.3 suites are not configurable and are all modern.
var modernTLS12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerTLSConfig returns the webhook server's TLS configuration: TLS 1.2 or
// newer, modern cipher suites only, and the certificate that r has in force
// at each handshake, so rotation needs no restart.
//
// When clientCAFile is not empty, every client must present a certificate
// signed by a CA in that PEM bundle (the certificate the API server presents
// to webhooks is set in its AdmissionConfiguration kubeConfigFile); clients
// without one are rejected during the handshake. The bundle is read once,
// here.
func ServerTLSConfig(r *Reloader, clientCAFile string) (*tls.Config, error) {
	if r == nil {
		return nil, errors.New("a certificate reloader is required; build one with certs.NewReloader")
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   modernTLS12CipherSuites,
		GetCertificate: r.GetCertificate,
	}
	if clientCAFile != "" {
		pool, err := cert.NewPool(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("could not load the client CA bundle: %w; check --client-ca-file", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
