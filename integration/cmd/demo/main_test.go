package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// The README's first command must stay true, on a fresh machine too: there, building
// sysctl-placement takes minutes, longer than the demo's setup deadline. The demo runs
// here with every `go` command slower than that deadline (a wrapper first on PATH), and
// must still reach its report: no deadline may cover a compile.
func TestDemo(t *testing.T) {
	const setupTimeout = time.Minute
	slowGo(t, setupTimeout+time.Second)
	// Build here, as `go run ./cmd/demo` does, not from what `task tools` built.
	t.Setenv(cluster.ToolsDirEnv, "")

	ctx, cancel := context.WithTimeout(t.Context(), 2*setupTimeout+3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, &out, options{workDir: t.TempDir(), setupTimeout: setupTimeout})
	report := out.String()

	t.Run("a build slower than the setup deadline still reaches the report", func(t *testing.T) {
		if err != nil {
			t.Fatalf("demo failed: %v\n%s", err, report)
		}
		if !strings.Contains(report, "Where each pod runs") {
			t.Fatalf("no report:\n%s", report)
		}
	})
	t.Run("every example runs on the pool whose kubelets allow its sysctls", func(t *testing.T) {
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
	})
	t.Run("on a machine that can run a real node a container reads its sysctl back, elsewhere a line says why not", func(t *testing.T) {
		binDir := os.Getenv(cluster.BinDirEnv)
		if binDir == "" {
			binDir = filepath.Join(cluster.RepoRoot(), "integration", "bin")
		}
		want := regexp.MustCompile(`inside the container of mqueue-probe on mqueue-1 \(a real node\): fs\.mqueue\.msg_max = 64 \(asked 64\)`)
		if reason := cluster.CheckRealNode(binDir); reason != nil {
			want = regexp.MustCompile(`no real node, the demo goes on with hollow kubelets only: ` + regexp.QuoteMeta(reason.Error()))
		}
		if !want.MatchString(report) {
			t.Errorf("the report does not match %s:\n%s", want, report)
		}
	})
}

// slowGo puts a `go` first on PATH that waits d before it runs the real one, as a cold
// build on a fresh machine would.
func slowGo(t *testing.T, d time.Duration) {
	t.Helper()
	real, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nsleep %d\nexec %q \"$@\"\n", int(d.Seconds()), real)
	if err := os.WriteFile(filepath.Join(dir, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}
