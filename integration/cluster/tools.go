package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// ToolsDirEnv names the directory where `go tool task tools` built every Tool. The
// tasks that run tests or the demo set it, so that no compile ever runs inside a test's
// or the demo's deadline: on a fresh machine one cold build takes longer than any of
// them.
const ToolsDirEnv = "SYSCTL_PLACEMENT_TOOLS"

// A Tool is a program of this repository that the tests and the demo run. Each is
// built from its own module, exactly as a user would build it, so the binary under test
// is the one that ships and not one built with the integration module's dependency
// versions.
type Tool struct {
	// Module is the directory of the module that builds it, relative to the repository
	// root.
	Module string
	// Package is its main package, relative to Module.
	Package string
	// Static builds it without cgo, for an image with nothing but the binary.
	Static bool

	once sync.Once
	path string
	err  error
}

// The programs tests and the demo run. Tools lists them all, for `task tools`.
var (
	SysctlPlacement   = &Tool{Module: ".", Package: "./cmd/sysctl-placement"}
	ExecCredential    = &Tool{Module: "integration", Package: "./cmd/exec-credential"}
	HelmTemplate      = &Tool{Module: "deploy/chartcheck", Package: "./cmd/helm-template"}
	MonitoringMetrics = &Tool{Module: "deploy/chartcheck", Package: "./cmd/monitoring-metrics"}
	// SysctlProbe is the real nodes' test image's only file (ProbeImage).
	SysctlProbe = &Tool{Module: "integration", Package: "./cmd/sysctl-probe", Static: true}
	// Helm is Helm's own CLI (helm.sh/helm/v4/cmd/helm, a tool of chartcheck's module,
	// pinned there): tests install, upgrade and uninstall the chart as users do.
	Helm = &Tool{Module: "deploy/chartcheck", Package: "helm.sh/helm/v4/cmd/helm"}
	// PackageChart writes the chart as `go tool task release` publishes it: a .tgz
	// pinned to the built image by digest. Tests install that, not the directory.
	PackageChart = &Tool{Module: "deploy/chartcheck", Package: "./cmd/package-chart"}

	Tools = []*Tool{SysctlPlacement, ExecCredential, HelmTemplate, MonitoringMetrics, SysctlProbe, Helm, PackageChart}
)

// Name is the binary's file name: its package's last element.
func (t *Tool) Name() string { return path.Base(t.Package) }

// Path is the binary to run. With ToolsDirEnv set it is the one built there ahead of
// time, and it is an error for it to be missing. Without it (an ad-hoc `go test`), the
// tool is built once per process on first use; callers that keep a deadline call Path
// before they start it.
func (t *Tool) Path() (string, error) {
	t.once.Do(func() {
		if dir := os.Getenv(ToolsDirEnv); dir != "" {
			t.path = filepath.Join(dir, t.Name())
			if _, err := os.Stat(t.path); err != nil {
				t.err = fmt.Errorf("%s was not built ahead (%s=%s): run `go tool task tools`: %w", t.Name(), ToolsDirEnv, dir, err)
			}
			return
		}
		dir, err := os.MkdirTemp("", t.Name()+"-bin-")
		if err != nil {
			t.err = err
			return
		}
		t.path, t.err = t.Build(dir)
	})
	return t.path, t.err
}

// Build compiles the tool into dir and returns its path. It takes no context on
// purpose: a compile is never cut short by a deadline.
func (t *Tool) Build(dir string) (string, error) {
	out, err := filepath.Abs(filepath.Join(dir, t.Name()))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", out, t.Package)
	cmd.Dir = filepath.Join(RepoRoot(), t.Module)
	if t.Static {
		cmd.Args = slices.Insert(cmd.Args, 2, "-trimpath")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("could not build %s in %s: %w\n%s", t.Package, t.Module, err, b)
	}
	return out, nil
}

// BuildTools builds every Tool into dir, for `go tool task tools`, and says on out how
// long each took (cold, sysctl-placement and helm-template take minutes each).
func BuildTools(dir string, out io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, t := range Tools {
		started := time.Now()
		if _, err := t.Build(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "      built %s (%s) in %s\n", t.Name(), t.Module, time.Since(started).Round(time.Second))
	}
	return errors.Join(errs...)
}
