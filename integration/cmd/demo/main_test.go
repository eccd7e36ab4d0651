package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The README's first command must stay true: the demo applies the unchanged examples
// and reports every pod Running on the pool whose kubelets allow its sysctls.
func TestTheDemoRunsEveryExampleOnThePoolThatAllowsItsSysctls(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, t.TempDir(), false); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	report := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^postgres-\S+\s+kernel\.shmmax,kernel\.sem\s+ipc-\d\s+ipc\s+Running\s+nodeSelector`),
		regexp.MustCompile(`(?m)^redis-\S+\s+net\.core\.somaxconn\s+net-\d\s+net\s+Running\s+nodeSelector`),
		regexp.MustCompile(`(?m)^shm-cache-\S+\s+kernel\.shmmax\s+ipc-\d\s+ipc\s+Running`),
		regexp.MustCompile(`Warning: sysctl-placement: set hostIPC: false`),
		regexp.MustCompile(`export KUBECONFIG=`),
	} {
		if !want.MatchString(report) {
			t.Errorf("the report does not match %s:\n%s", want, report)
		}
	}
	if strings.Contains(report, "SysctlForbidden") {
		t.Errorf("a pod was rejected by its kubelet:\n%s", report)
	}
}
