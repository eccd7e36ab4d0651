// Command build-control-plane builds the control plane that the integration tests run
// — etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl — from
// the Go modules pinned in integration/go.mod and integration/etcd/go.mod, into
// integration/bin.
//
// No Docker, kind or setup-envtest download is needed: everything comes from the Go
// module proxy. A stamp file (bin/.versions) records the versions the binaries were
// built from; when it matches, nothing is rebuilt. A cold build takes about ten
// minutes on two cores, so progress is printed as it goes.
//
// Run it from integration/ (or pass -dir):
//
//	go run ./cmd/build-control-plane
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

// stampFormat changes whenever the way binaries are built changes (flags, list of
// binaries), so that old binaries are rebuilt even if the versions stayed the same.
const stampFormat = "2"

// stampFile sits next to the binaries and records what they were built from.
const stampFile = ".versions"

// heartbeat is how often a long build reports that it is still busy.
const heartbeat = 20 * time.Second

// binary is one control-plane executable and the module that provides it.
type binary struct {
	name      string // file name in bin/
	pkg       string // Go package to build
	moduleDir string // module (relative to -dir) whose go.mod pins pkg
	module    string // module path whose version stamps the binary
}

var binaries = []binary{
	{name: "etcd", pkg: "go.etcd.io/etcd/server/v3", moduleDir: "etcd", module: "go.etcd.io/etcd/server/v3"},
	{name: "kube-apiserver", pkg: "k8s.io/kubernetes/cmd/kube-apiserver", moduleDir: ".", module: "k8s.io/kubernetes"},
	{name: "kube-controller-manager", pkg: "k8s.io/kubernetes/cmd/kube-controller-manager", moduleDir: ".", module: "k8s.io/kubernetes"},
	{name: "kube-scheduler", pkg: "k8s.io/kubernetes/cmd/kube-scheduler", moduleDir: ".", module: "k8s.io/kubernetes"},
	{name: "kubectl", pkg: "k8s.io/kubernetes/cmd/kubectl", moduleDir: ".", module: "k8s.io/kubernetes"},
}

func main() {
	dir := flag.String("dir", ".", "the integration module's directory")
	binDir := flag.String("bin", "", "where to put the binaries (default <dir>/bin)")
	force := flag.Bool("force", false, "rebuild even when the stamp says the binaries are up to date")
	flag.Parse()
	if *binDir == "" {
		*binDir = filepath.Join(*dir, "bin")
	}
	if err := run(*dir, *binDir, *force); err != nil {
		fmt.Fprintln(os.Stderr, "build-control-plane:", err)
		os.Exit(1)
	}
}

func run(dir, binDir string, force bool) error {
	versions, err := moduleVersions(dir)
	if err != nil {
		return err
	}
	goVersion, err := goOutput(dir, "env", "GOVERSION")
	if err != nil {
		return err
	}
	stamp := stampFor(versions, goVersion)

	if !force && upToDate(binDir, stamp) {
		fmt.Printf("control plane in %s is up to date (%s)\n", binDir, oneLine(stamp))
		return nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	// Remove the stamp first: an interrupted build must not look finished.
	if err := os.Remove(filepath.Join(binDir, stampFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	fmt.Printf("building the control plane into %s (%s)\n", binDir, oneLine(stamp))
	fmt.Println("a cold build takes about ten minutes on two cores; later builds reuse the Go build cache")
	started := time.Now()
	for i, b := range binaries {
		fmt.Printf("[%d/%d] building %s from %s@%s\n", i+1, len(binaries), b.name, b.module, versions[b.module])
		if err := build(dir, binDir, b, ldflags(b, versions[b.module])); err != nil {
			return fmt.Errorf("could not build %s: %w", b.name, err)
		}
	}
	if err := verify(binDir, versions); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(binDir, stampFile), []byte(stamp), 0o644); err != nil {
		return err
	}
	fmt.Printf("control plane built in %s\n", time.Since(started).Round(time.Second))
	return nil
}

// moduleVersions asks the go command which versions go.mod pins, so the stamp
// follows go.mod without a second place to edit.
func moduleVersions(dir string) (map[string]string, error) {
	versions := map[string]string{}
	for _, b := range binaries {
		if _, done := versions[b.module]; done {
			continue
		}
		v, err := goOutput(filepath.Join(dir, b.moduleDir), "list", "-m", "-f", "{{.Version}}", b.module)
		if err != nil {
			return nil, fmt.Errorf("could not read the version of %s from %s/go.mod: %w", b.module, b.moduleDir, err)
		}
		versions[b.module] = v
	}
	return versions, nil
}

func stampFor(versions map[string]string, goVersion string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "format %s\n", stampFormat)
	seen := map[string]bool{}
	for _, b := range binaries {
		if !seen[b.module] {
			seen[b.module] = true
			fmt.Fprintf(&s, "%s %s\n", b.module, versions[b.module])
		}
	}
	fmt.Fprintf(&s, "go %s\n", goVersion)
	return s.String()
}

func upToDate(binDir, stamp string) bool {
	old, err := os.ReadFile(filepath.Join(binDir, stampFile))
	if err != nil || string(old) != stamp {
		return false
	}
	for _, b := range binaries {
		info, err := os.Stat(filepath.Join(binDir, b.name))
		if err != nil || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

var releaseVersion = regexp.MustCompile(`^v(\d+)\.(\d+)\.\d+`)

// ldflags sets what hack/lib/version.sh sets in a release build, so that
// `kubectl version` and `kube-apiserver --version` report the real version: the
// apiserver derives its binary (and default emulation) version from gitVersion.
// The module zip carries no git commit, so gitCommit stays empty.
func ldflags(b binary, version string) string {
	if b.module != "k8s.io/kubernetes" {
		return "-s -w"
	}
	m := releaseVersion.FindStringSubmatch(version)
	major, minor := "", ""
	if m != nil {
		major, minor = m[1], m[2]
	}
	vars := [][2]string{
		{"gitVersion", version},
		{"gitMajor", major},
		{"gitMinor", minor},
		{"gitCommit", ""},
		{"gitTreeState", "clean"},
		{"buildDate", time.Now().UTC().Format(time.RFC3339)},
	}
	flags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, v := range vars {
			flags = append(flags, fmt.Sprintf("-X '%s.%s=%s'", pkg, v[0], v[1]))
		}
	}
	return strings.Join(flags, " ")
}

// build runs `go build -v` and turns its package list into a running count, so a
// ten-minute compile shows that it is moving. Anything else go prints (errors) is
// passed through as it comes.
func build(dir, binDir string, b binary, ldflags string) error {
	out, err := filepath.Abs(filepath.Join(binDir, "."+b.name+".tmp"))
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-v", "-ldflags", ldflags, "-o", out, b.pkg)
	cmd.Dir = filepath.Join(dir, b.moduleDir)
	cmd.Stdout = os.Stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}

	var compiled atomic.Int64
	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(heartbeat)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				fmt.Printf("      still building %s: %s, %d packages compiled so far\n",
					b.name, time.Since(started).Round(time.Second), compiled.Load())
			}
		}
	}()
	countPackages(stderr, &compiled)
	err = cmd.Wait()
	close(done)
	if err != nil {
		_ = os.Remove(out)
		return err
	}
	fmt.Printf("      built %s in %s (%d packages compiled, the rest from the build cache)\n",
		b.name, time.Since(started).Round(time.Second), compiled.Load())
	return os.Rename(out, filepath.Join(binDir, b.name))
}

func countPackages(r io.Reader, compiled *atomic.Int64) {
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := scanner.Text()
		if line != "" && !strings.ContainsAny(line, " \t:") {
			compiled.Add(1) // an import path: one package compiled
			continue
		}
		fmt.Fprintln(os.Stderr, line)
	}
}

// verify checks that the version stamping worked, since a binary that says
// v0.0.0-master confuses every version-dependent check later on.
func verify(binDir string, versions map[string]string) error {
	want := versions["k8s.io/kubernetes"]
	for _, args := range [][]string{{"kube-apiserver", "--version"}, {"kubectl", "version", "--client"}} {
		out, err := exec.Command(filepath.Join(binDir, args[0]), args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s failed: %w\n%s", args[0], strings.Join(args[1:], " "), err, out)
		}
		if !bytes.Contains(out, []byte(want)) {
			return fmt.Errorf("%s reports %q, want %s: check the -X ldflags", args[0], strings.TrimSpace(string(out)), want)
		}
		fmt.Printf("      %s: %s\n", args[0], oneLine(string(out)))
	}
	return nil
}

func goOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")), " ")
}
