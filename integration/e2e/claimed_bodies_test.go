package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

func TestClaimedBodies(t *testing.T) {
	// Memory must follow the bytes that arrive, not those a client claims: serve once
	// sized each body's buffer from Content-Length before any byte arrived.
	t.Run("a thousand claims of 6MB cost serve little and delay no admission", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "claims", nil)
		addr := strings.TrimPrefix(env.webhook.URL, "https://")
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(env.webhook.CABundle)
		pid := env.webhook.PID()

		admit := func(name string) time.Duration {
			t.Helper()
			began := time.Now()
			pod, err := env.Client.CoreV1().Pods(ns).Create(ctx, sysctlPod(name), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			took := time.Since(began)
			if err != nil {
				t.Fatalf("a real admission failed: %v", err)
			}
			if pod.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
				t.Fatalf("a real admission was not placed: %v", pod.Spec.NodeSelector)
			}
			return took
		}
		// Warm: the first admission builds the API server's client and serve's caches.
		admit("warm")
		idle, err := process.ReadSample(pid)
		if err != nil {
			t.Fatal(err)
		}

		// 1,000 TLS connections, each sends the headers of a review that claims 6 MB and
		// 1 KiB of it, then nothing. Opened by 8 workers, all within the server's
		// ReadTimeout (15 s), so that all are held at once.
		const conns, workers = 1000, 8
		head := fmt.Sprintf("POST /mutate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 6000000\r\n\r\n", addr)
		chunk := append([]byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"`), bytes.Repeat([]byte("x"), 1<<10)...)[:1<<10]
		held := make([]net.Conn, conns)
		defer func() {
			for _, c := range held {
				if c != nil {
					c.Close()
				}
			}
		}()
		opened := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < conns; i += workers {
					dialer := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}}
					c, err := dialer.DialContext(ctx, "tcp", addr)
					if err != nil {
						errs <- fmt.Errorf("connection %d: %w (file descriptors: ulimit -n must allow 1000+ per process)", i, err)
						return
					}
					held[i] = c
					if _, err := c.Write(append([]byte(head), chunk...)); err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		t.Logf("opened %d connections claiming 6 MB and sent 1 KiB on each in %s", conns, time.Since(opened).Round(time.Millisecond))

		// Real admissions through the API server while the claims are held; serve's
		// memory is sampled around each.
		peak := idle.RSS
		sample := func() {
			s, err := process.ReadSample(pid)
			if err != nil {
				t.Fatal(err)
			}
			peak = max(peak, s.RSS)
		}
		var latencies []time.Duration
		for i := range 20 {
			sample()
			latencies = append(latencies, admit(fmt.Sprintf("real-%02d", i)))
		}
		sample()
		end, err := process.ReadSample(pid)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(latencies)
		growth := int64(peak) - int64(idle.RSS)
		t.Logf("drill: %d connections claiming 6 MB, 1 KiB sent: serve VmRSS idle %d MiB, peak sampled %d MiB (growth %d MiB), VmHWM %d MiB; real admission p50 %s max %s",
			conns, idle.RSS>>20, peak>>20, growth>>20, end.HWM>>20, latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
		if growth >= 64<<20 {
			t.Errorf("serve's RSS grew by %d MiB with %d claims of 6 MB held, want < 64 MiB", growth>>20, conns)
		}
		if worst := latencies[len(latencies)-1]; worst >= time.Second {
			t.Errorf("a real admission took %s with the claims held, want < 1s", worst)
		}
		for i, c := range held {
			c.Close()
			held[i] = nil
		}

		t.Run("the metrics port refuses headers over its limit with 431", func(t *testing.T) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.webhook.MetricsURL+"/healthz", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Padding", strings.Repeat("x", 128<<10))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("128 KiB of headers to the metrics port = %d, want 431", resp.StatusCode)
			}
		})
		select {
		case <-env.webhook.Exited():
			t.Fatalf("serve exited: %v", env.webhook.ExitErr())
		default:
		}
	})
}
