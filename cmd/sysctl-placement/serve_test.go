package main

import (
	"io"
	"strings"
	"testing"
)

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

// TestServeAdmissionFlag: which backend serve runs.
func TestServeAdmissionFlag(t *testing.T) {
	t.Run("the backend is the webhook unless --admission=policy asks for the policies", func(t *testing.T) {
		cmd := newServeCommand(&globalOptions{}, streams{out: io.Discard, errOut: io.Discard})
		if err := cmd.ParseFlags(nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := cmd.Flags().GetString("admission"); got != admissionWebhook {
			t.Errorf("default --admission %q; want %q", got, admissionWebhook)
		}
	})
	t.Run("any other value is refused before anything starts, naming the two", func(t *testing.T) {
		required := []string{"serve", "--config", "c.yaml", "--tls-cert-file", "tls.crt", "--tls-private-key-file", "tls.key"}
		code, _, errOut := runCommand(t, "", append(required, "--admission=policies")...)
		if code == 0 || !strings.Contains(errOut, `--admission "policies" is not supported: use webhook or policy`) {
			t.Errorf("--admission=policies: exit %d, stderr %q", code, errOut)
		}
	})
}
