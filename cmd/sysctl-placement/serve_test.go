package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestDrainingResponsesCloseTheConnection(t *testing.T) {
	var draining atomic.Bool
	srv := httptest.NewServer(closeWhenDraining(&draining, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()

	get := func() *http.Response {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.Close {
		t.Fatalf("a response before draining asked to close the connection")
	}
	draining.Store(true)
	if resp := get(); !resp.Close {
		t.Fatalf("a response while draining did not ask to close the connection: %v", resp.Header)
	}
}

func TestDrainWaitsForTheDelayOrAServerError(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	log.Logger.Out = io.Discard
	var draining atomic.Bool
	errs := make(chan error, 1)
	start := time.Now()
	drain(&draining, 50*time.Millisecond, errs, log)
	if !draining.Load() {
		t.Fatal("drain did not set draining")
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("drain returned before the delay")
	}
	errs <- io.ErrUnexpectedEOF
	done := make(chan struct{})
	go func() { drain(&draining, time.Hour, errs, log); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("drain did not return on a server error")
	}
}

// TestServeRateLimitsItsAPICallsByFlags: serve's own API calls (mostly the audit
// Events, one per placed pod) are limited by --kube-api-qps and --kube-api-burst,
// 50 and 100 by default instead of client-go's 5 and 10, and a limit that could never
// let a call through is refused before anything starts.
func TestServeRateLimitsItsAPICallsByFlags(t *testing.T) {
	cmd := newServeCommand(&globalOptions{}, streams{out: io.Discard, errOut: io.Discard})
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	qps, _ := cmd.Flags().GetFloat32("kube-api-qps")
	burst, _ := cmd.Flags().GetInt("kube-api-burst")
	if qps != 50 || burst != 100 {
		t.Errorf("defaults: --kube-api-qps %v --kube-api-burst %d, want 50 and 100", qps, burst)
	}
	required := []string{"serve", "--config", "c.yaml", "--tls-cert-file", "tls.crt", "--tls-private-key-file", "tls.key"}
	for _, bad := range []string{"--kube-api-qps=0", "--kube-api-burst=0", "--kube-api-qps=-1", "--kube-api-qps=NaN"} {
		code, _, errOut := runCommand(t, "", append(required, bad)...)
		if code == 0 || !strings.Contains(errOut, "--kube-api-qps and --kube-api-burst must be positive") {
			t.Errorf("%s: exit %d, stderr %q", bad, code, errOut)
		}
	}
}
