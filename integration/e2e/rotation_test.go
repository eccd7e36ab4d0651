package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// secretVolume lays files out as the kubelet does for the Deployment's Secret volume:
// a timestamped directory, a ..data symlink to it, and tls.crt/tls.key symlinks
// through ..data (the volume's items: nothing else of the Secret, never the CA's key).
// An update writes a new directory and renames a new ..data link over the old one.
type secretVolume struct {
	dir string
	gen int
}

func (v *secretVolume) write(t *testing.T, from string) {
	t.Helper()
	v.gen++
	ts := fmt.Sprintf("..2026_11_26_00_00_%02d.000000%d", v.gen, v.gen)
	if err := os.MkdirAll(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		data, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func leafSerial(t *testing.T, certFile string) string {
	t.Helper()
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

func TestCertificateRotation(t *testing.T) {
	t.Run("the running server picks up a rotated Secret without dropping requests", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		createSystemNamespace(ctx, t, c)
		bin, err := cluster.SysctlPlacement.Path()
		if err != nil {
			t.Fatal(err)
		}
		// Two independent certificate sets, as two runs of the certs Job with a new CA.
		var pairs [2]string
		for i := range pairs {
			pairs[i] = t.TempDir()
			if out, err := exec.CommandContext(ctx, bin, "certs", "--write-dir", pairs[i], "--host", "127.0.0.1").CombinedOutput(); err != nil {
				t.Fatalf("certs --write-dir: %v\n%s", err, out)
			}
		}
		vol := &secretVolume{dir: t.TempDir()}
		vol.write(t, pairs[0])

		serve, err := cluster.StartServe(ctx, cluster.ServeOptions{
			Bin: bin, Name: "serve", LogDir: t.TempDir(), ReadyTimeout: time.Minute,
			Flags: cluster.ServeFlags{
				Config:  filepath.Join(cluster.RepoRoot(), "deploy", "examples", "placement-config.yaml"),
				CertDir: vol.dir, Kubeconfig: c.Kubeconfig,
			},
		})
		if err != nil {
			t.Fatalf("serve never became ready: %v", err)
		}
		t.Cleanup(func() {
			_ = serve.Kill()
			if t.Failed() {
				t.Logf("serve log:\n%s", process.Tail(serve.LogFile, 1000))
			}
		})
		listen := strings.TrimPrefix(serve.URL, "https://")

		// Clients trust both CAs, as API servers do while caBundle carries old and new.
		roots := x509.NewCertPool()
		for _, dir := range pairs {
			ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
			if err != nil {
				t.Fatal(err)
			}
			roots.AppendCertsFromPEM(ca)
		}
		tlsConfig := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		body := admissionReview(t, "default", &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		})
		var sent, failed atomic.Int64
		var firstFailure atomic.Value
		send := func(client *http.Client) {
			resp, err := client.Post("https://"+listen+"/mutate", "application/json", bytes.NewReader(body))
			sent.Add(1)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if err != nil {
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			}
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			keepAlive := i%2 == 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: !keepAlive}}
				for {
					select {
					case <-stop:
						return
					default:
						send(client)
					}
				}
			}()
		}

		// Let requests flow on the old certificate, then rotate the Secret volume.
		if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return sent.Load() > 50, nil }); err != nil {
			t.Fatal(err)
		}
		vol.write(t, pairs[1])
		newSerial := leafSerial(t, filepath.Join(pairs[1], "tls.crt"))
		err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			conn, err := tls.Dial("tcp", listen, tlsConfig)
			if err != nil {
				return false, nil
			}
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0].SerialNumber.String() == newSerial, nil
		})
		atRotation := sent.Load()
		if err != nil {
			t.Fatalf("new connections never saw the rotated certificate: %v", err)
		}
		if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return sent.Load() > atRotation+50, nil }); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		if failed.Load() != 0 {
			t.Fatalf("%d of %d requests failed across the rotation; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
		}
		t.Logf("%d requests across the rotation, none failed", sent.Load())
	})
}
