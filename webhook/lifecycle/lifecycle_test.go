package lifecycle

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// testConfig serves "admitted" on a TLS listener and the ops endpoints on a plain
// one, both on loopback ports of their own; client trusts the admission listener.
func testConfig(t *testing.T) (cfg Config, client *http.Client) {
	t.Helper()
	// httptest's certificate is valid for 127.0.0.1.
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	tlsConfig := ts.TLS.Clone()
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	ts.Close()
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	log := logrus.NewEntry(logrus.New())
	log.Logger.Out = io.Discard
	cfg = Config{
		Admission: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, "admitted")
		}),
		AdmissionTLS:      tlsConfig,
		AdmissionListener: listen(),
		OpsListener:       listen(),
		Metrics:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") }),
		Ready:             func() error { return nil },
		ShutdownGrace:     5 * time.Second,
		Logger:            log,
	}
	client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	return cfg, client
}

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestRun(t *testing.T) {
	t.Run("it serves admissions and probes until ctx ends, then returns nil", func(t *testing.T) {
		cfg, client := testConfig(t)
		notReady := errors.New("the namespace cache has not synced")
		readyErr := notReady
		cfg.Ready = func() error { return readyErr }
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg) }()

		admission := "https://" + cfg.AdmissionListener.Addr().String()
		ops := "http://" + cfg.OpsListener.Addr().String()
		if code, body := get(t, client, admission+"/mutate"); code != http.StatusOK || body != "admitted" {
			t.Errorf("admission: %d %q", code, body)
		}
		if code, body := get(t, client, ops+"/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("/healthz: %d %q", code, body)
		}
		if code, body := get(t, client, ops+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: the namespace cache has not synced") {
			t.Errorf("/readyz before ready: %d %q", code, body)
		}
		if code, body := get(t, client, ops+"/metrics"); code != http.StatusOK || body != "metrics" {
			t.Errorf("/metrics: %d %q", code, body)
		}
		if code, _ := get(t, client, ops+"/debug/pprof/"); code != http.StatusNotFound {
			t.Errorf("pprof without Profiling: %d, want 404", code)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after ctx ended", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after ctx ended")
		}
	})
	t.Run("the first task to fail shuts the process down with its named error", func(t *testing.T) {
		cfg, _ := testConfig(t)
		stopped := make(chan struct{})
		cfg.Tasks = []Task{
			{Name: "config watcher", Run: func(context.Context) error { return errors.New("no such directory") }},
			{Name: "audit events", Run: func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }},
		}
		cfg.ShutdownDelay = time.Hour // no drain after a failure
		done := make(chan error, 1)
		go func() { done <- Run(t.Context(), cfg) }()
		select {
		case err := <-done:
			if err == nil || err.Error() != "config watcher: no such directory" {
				t.Errorf("Run = %v, want the config watcher's error", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after a task failed")
		}
		select {
		case <-stopped:
		default:
			t.Error("the other tasks were not stopped before Run returned")
		}
	})
	t.Run("Protect guards metrics and profiles, not the probes", func(t *testing.T) {
		cfg, client := testConfig(t)
		cfg.Profiling = true
		cfg.Protect = func(http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no token", http.StatusUnauthorized) })
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run ended with %v, want nil once ctx ends", err)
			}
		}()
		ops := "http://" + cfg.OpsListener.Addr().String()
		for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 401, "/debug/pprof/": 401, "/debug/pprof/profile": 401} {
			if code, _ := get(t, client, ops+path); code != want {
				t.Errorf("%s: %d, want %d", path, code, want)
			}
		}
	})
}
