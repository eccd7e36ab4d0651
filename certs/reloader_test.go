package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

func TestReloader(t *testing.T) {
	// TestRotatingTheCertificateWhileAClientKeepsSendingRequestsFailsNoRequestAndNewConnectionsSeeTheNewCertificate
	// rotates to a certificate from a new CA while workers send requests, half
	// over kept-alive connections (HTTP/2) and half over a fresh connection each
	// time, as the API server may.
	t.Run("rotating the certificate while a client keeps sending requests fails no request and new connections see the new certificate", func(t *testing.T) {
		oldCA, newCA := newTestCA(t, "old-ca"), newTestCA(t, "new-ca")
		oldPair, newPair := newServingPair(t, oldCA), newServingPair(t, newCA)

		vol := newSecretVolume(t, oldPair.certPEM, oldPair.keyPEM)
		r, logs, _ := runReloader(t, ReloaderConfig{CertFile: vol.certFile(), KeyFile: vol.keyFile()})
		cfg, err := ServerTLSConfig(r, "")
		if err != nil {
			t.Fatalf("ServerTLSConfig: %v", err)
		}
		addr := startServer(t, cfg)
		// The client trusts both CAs, as the caBundle does during a CA rotation.
		roots := poolOf(oldCA, newCA)

		type worker struct {
			fresh    bool
			requests atomic.Int64
			sawNew   atomic.Bool
		}
		const workers = 8
		ws := make([]*worker, workers)
		keepAlive := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
		defer keepAlive.CloseIdleConnections()

		var (
			stop     = make(chan struct{})
			wg       sync.WaitGroup
			mu       sync.Mutex
			failures []error
		)
		for i := range ws {
			w := &worker{fresh: i%2 == 1}
			ws[i] = w
			transport := keepAlive
			if w.fresh {
				transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
			}
			client := &http.Client{Transport: transport, Timeout: waitTimeout}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					serial, err := get(client, "https://"+addr+"/")
					if err != nil {
						mu.Lock()
						failures = append(failures, err)
						mu.Unlock()
					} else if serial.Cmp(newPair.serial) == 0 {
						w.sawNew.Store(true)
					}
					w.requests.Add(1)
				}
			})
		}
		stopWorkers := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer stopWorkers()

		everyWorkerDidMore := func(than []int64, n int64) func() bool {
			return func() bool {
				for i, w := range ws {
					if w.requests.Load() < than[i]+n {
						return false
					}
				}
				return true
			}
		}
		counts := func() []int64 {
			c := make([]int64, len(ws))
			for i, w := range ws {
				c[i] = w.requests.Load()
			}
			return c
		}

		eventually(t, "every worker has sent requests on the old certificate", everyWorkerDidMore(make([]int64, workers), 5))

		vol.update(newPair.certPEM, newPair.keyPEM)

		eventually(t, "a new connection is presented the new certificate", func() bool {
			serial, err := presentedSerial(addr, roots)
			return err == nil && serial.Cmp(newPair.serial) == 0
		})
		eventually(t, "every worker has sent more requests after the rotation", everyWorkerDidMore(counts(), 5))
		eventually(t, "every fresh-connection worker has seen the new certificate", func() bool {
			for _, w := range ws {
				if w.fresh && !w.sawNew.Load() {
					return false
				}
			}
			return true
		})
		stopWorkers()

		var total int64
		for _, w := range ws {
			total += w.requests.Load()
		}
		mu.Lock()
		defer mu.Unlock()
		if len(failures) > 0 {
			t.Errorf("%d of %d requests failed during the rotation; first: %v", len(failures), total, failures[0])
		}
		t.Logf("%d requests, %d failed", total, len(failures))

		if got := r.Current().Leaf.SerialNumber; got.Cmp(newPair.serial) != 0 {
			t.Errorf("certificate in force has serial %s, want the new %s", got, newPair.serial)
		}
		if !hasEntry(logs.AllEntries(), logrus.InfoLevel, "TLS certificate reloaded") {
			t.Error("the reload was not logged")
		}
	})

	t.Run("a broken pair is refused and the old certificate stays", func(t *testing.T) {
		ca := newTestCA(t, "ca")
		oldPair, newPair := newServingPair(t, ca), newServingPair(t, ca)
		vol := newSecretVolume(t, oldPair.certPEM, oldPair.keyPEM)
		r, logs, errs := runReloader(t, ReloaderConfig{CertFile: vol.certFile(), KeyFile: vol.keyFile()})
		cfg, err := ServerTLSConfig(r, "")
		if err != nil {
			t.Fatalf("ServerTLSConfig: %v", err)
		}
		addr := startServer(t, cfg)

		// The new certificate with the old key: what a half-finished rotation
		// leaves behind.
		vol.update(newPair.certPEM, oldPair.keyPEM)

		select {
		case err := <-errs:
			for _, want := range []string{"refused the TLS key pair in " + vol.certFile(), "still serving the previous one", "private key does not match public key"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
		case <-time.After(waitTimeout):
			t.Fatal("the broken pair was not reported through OnError")
		}
		if !hasEntry(logs.AllEntries(), logrus.ErrorLevel, "TLS certificate not reloaded") {
			t.Error("the refusal was not logged as an error")
		}
		if got := r.Current().Leaf.SerialNumber; got.Cmp(oldPair.serial) != 0 {
			t.Errorf("certificate in force has serial %s, want the old %s", got, oldPair.serial)
		}
		serial, err := presentedSerial(addr, poolOf(ca))
		if err != nil {
			t.Fatalf("a new connection failed after the broken pair was refused: %v", err)
		}
		if serial.Cmp(oldPair.serial) != 0 {
			t.Errorf("a new connection is presented serial %s, want the old %s", serial, oldPair.serial)
		}

		// Finishing the rotation brings the new pair in.
		vol.update(newPair.certPEM, newPair.keyPEM)
		eventually(t, "the repaired pair is in force", func() bool {
			return r.Current().Leaf.SerialNumber.Cmp(newPair.serial) == 0
		})
	})

	t.Run("a pair changed outside the watched directory is picked up by the periodic check", func(t *testing.T) {
		ca := newTestCA(t, "ca")
		oldPair, newPair := newServingPair(t, ca), newServingPair(t, ca)

		// tls.crt and tls.key link into another directory, so no event reaches
		// the watcher when the targets change.
		linked, target := t.TempDir(), t.TempDir()
		writeFileAtomically(t, filepath.Join(target, "tls.crt"), oldPair.certPEM)
		writeFileAtomically(t, filepath.Join(target, "tls.key"), oldPair.keyPEM)
		for _, name := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join(target, name), filepath.Join(linked, name)); err != nil {
				t.Fatal(err)
			}
		}
		var reloads atomic.Int64
		r, _, _ := runReloader(t, ReloaderConfig{
			CertFile:      filepath.Join(linked, "tls.crt"),
			KeyFile:       filepath.Join(linked, "tls.key"),
			CheckInterval: 20 * time.Millisecond,
			OnReload:      func(*tls.Certificate) { reloads.Add(1) },
		})
		if reloads.Load() != 1 {
			t.Errorf("OnReload called %d times by NewReloader, want 1 (the initial pair)", reloads.Load())
		}

		writeFileAtomically(t, filepath.Join(target, "tls.crt"), newPair.certPEM)
		writeFileAtomically(t, filepath.Join(target, "tls.key"), newPair.keyPEM)
		eventually(t, "the periodic check brings the new pair in", func() bool {
			return r.Current().Leaf.SerialNumber.Cmp(newPair.serial) == 0
		})
		if reloads.Load() < 2 {
			t.Errorf("OnReload called %d times, want at least 2", reloads.Load())
		}
	})

	t.Run("a reloader refuses to start without a usable pair", func(t *testing.T) {
		ca := newTestCA(t, "ca")
		a, b := newServingPair(t, ca), newServingPair(t, ca)
		expiredCert, expiredKey := expiredPair(t, ca)

		tests := map[string]struct {
			certPEM, keyPEM []byte // nil: the file is not written
			want            string
		}{
			"missing files": {
				want: "no such file or directory",
			},
			"a key that does not match the certificate": {
				certPEM: a.certPEM, keyPEM: b.keyPEM,
				want: "private key does not match public key",
			},
			"a half-written certificate": {
				certPEM: a.certPEM[:len(a.certPEM)/2], keyPEM: a.keyPEM,
				want: "failed to find any PEM data in certificate input",
			},
			"an expired certificate": {
				certPEM: expiredCert, keyPEM: expiredKey,
				want: "expired at",
			},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
				if tc.certPEM != nil {
					writeFileAtomically(t, certFile, tc.certPEM)
					writeFileAtomically(t, keyFile, tc.keyPEM)
				}
				_, err := NewReloader(ReloaderConfig{CertFile: certFile, KeyFile: keyFile})
				if err == nil {
					t.Fatal("NewReloader accepted the pair")
				}
				for _, want := range []string{
					fmt.Sprintf("could not load TLS key pair from %s and %s: ", certFile, keyFile),
					tc.want,
					"; check --tls-cert-file/--tls-private-key-file",
				} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
			})
		}

		t.Run("no files named", func(t *testing.T) {
			_, err := NewReloader(ReloaderConfig{})
			if err == nil || !strings.Contains(err.Error(), "set --tls-cert-file and --tls-private-key-file") {
				t.Errorf("error %v does not name the flags to set", err)
			}
		})
	})
}

// get sends one request and returns the serial of the certificate the
// connection it went over was presented.
func get(client *http.Client, url string) (*big.Int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		return nil, fmt.Errorf("status %d, body %q", resp.StatusCode, body)
	}
	return resp.TLS.PeerCertificates[0].SerialNumber, nil
}

func writeFileAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// expiredPair signs a serving certificate that expired an hour ago.
func expiredPair(t *testing.T, ca *CA) (certPEM, keyPEM []byte) {
	t.Helper()
	keyPEM, err := keyutil.MakeEllipticPrivateKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "expired"},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     time.Now().Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.(crypto.Signer).Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err = cert.EncodeCertificates(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func hasEntry(entries []*logrus.Entry, level logrus.Level, msg string) bool {
	for _, e := range entries {
		if e.Level == level && e.Message == msg {
			return true
		}
	}
	return false
}
