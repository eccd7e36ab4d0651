package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"k8s.io/client-go/util/cert"
)

// waitTimeout bounds every wait on a condition; generous so that a loaded CI
// machine under -race does not flake, while a passing run returns as soon as
// the condition holds.
const waitTimeout = 30 * time.Second

var localhost = []net.IP{net.ParseIP("127.0.0.1")}

func newTestCA(t *testing.T, name string) *CA {
	t.Helper()
	ca, err := NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// servingPair is a serving certificate for 127.0.0.1 and localhost.
type servingPair struct {
	certPEM, keyPEM []byte
	serial          *big.Int
}

func newServingPair(t *testing.T, ca *CA) servingPair {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServing("sysctl-placement", "sysctl-placement-system", []string{"localhost"}, localhost, time.Hour)
	if err != nil {
		t.Fatalf("IssueServing: %v", err)
	}
	return servingPair{certPEM: certPEM, keyPEM: keyPEM, serial: leafOf(t, certPEM).SerialNumber}
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return certs[0]
}

// secretVolume lays files out the way the kubelet's AtomicWriter does for a
// Secret volume: the payload sits in a timestamped directory, "..data" is a
// symlink to it, and each file name is a symlink through "..data". An update
// writes a new timestamped directory, points "..data_tmp" at it, renames
// "..data_tmp" over "..data" (the one atomic step) and removes the old
// directory.
type secretVolume struct {
	t       *testing.T
	dir     string
	payload string
}

func newSecretVolume(t *testing.T, certPEM, keyPEM []byte) *secretVolume {
	t.Helper()
	v := &secretVolume{t: t, dir: t.TempDir()}
	v.update(certPEM, keyPEM)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
	}
	return v
}

func (v *secretVolume) certFile() string { return filepath.Join(v.dir, "tls.crt") }
func (v *secretVolume) keyFile() string  { return filepath.Join(v.dir, "tls.key") }

func (v *secretVolume) update(certPEM, keyPEM []byte) {
	v.t.Helper()
	payload, err := os.MkdirTemp(v.dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		v.t.Fatalf("make payload dir: %v", err)
	}
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(payload, name), data, 0o600); err != nil {
			v.t.Fatalf("write %s: %v", name, err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(payload), tmp); err != nil {
		v.t.Fatalf("link ..data_tmp: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatalf("swap ..data: %v", err)
	}
	if v.payload != "" {
		if err := os.RemoveAll(v.payload); err != nil {
			v.t.Fatalf("remove old payload: %v", err)
		}
	}
	v.payload = payload
}

// runReloader builds a Reloader over the volume and runs it until the test
// ends. errs receives every error reported through OnError.
func runReloader(t *testing.T, cfg ReloaderConfig) (r *Reloader, logs *logtest.Hook, errs <-chan error) {
	t.Helper()
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	errc := make(chan error, 100)
	cfg.Logger = logger
	cfg.OnError = func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	r, err := NewReloader(cfg)
	if err != nil {
		t.Fatalf("NewReloader: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r, hook, errc
}

// startServer serves "ok" over TLS with cfg on a free port of 127.0.0.1 and
// returns its address. It goes through http.Server.ServeTLS, as the webhook
// does, so HTTP/2 is negotiated the same way.
func startServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "ok")
		}),
		TLSConfig: cfg,
		// Refused handshakes are expected in these tests.
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 10 * time.Second,
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS: %v", err)
		}
	})
	return ln.Addr().String()
}

// presentedSerial opens a new connection and returns the serial number of
// the certificate the server presents.
func presentedSerial(addr string, roots *x509.CertPool) (*big.Int, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// eventually polls cond until it holds, failing the test after waitTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting until %s", waitTimeout, what)
		case <-tick.C:
		}
	}
}

func poolOf(cas ...*CA) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca.cert)
	}
	return pool
}
