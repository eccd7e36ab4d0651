// Command build-control-plane puts what the integration tests run into integration/bin:
// etcd, and the Kubernetes commands kube-apiserver, kube-controller-manager,
// kube-scheduler, kubectl, hollow-kubelet and kubelet, from the Go modules pinned in
// integration/go.mod and integration/etcd/go.mod.
//
// The Kubernetes commands are one executable, local-cluster (integration/cmd/local-cluster),
// linked under each command's name: the commands share most of their packages, and one
// link of one binary is quicker than five. A command that a usable binary already
// provides is taken from there instead and left out of local-cluster (a build tag), so
// its packages are not compiled at all:
//
//   - a binary in KUBEBUILDER_ASSETS, or left in bin/ by an earlier build, that reports
//     the pinned version (etcd and each Kubernetes command);
//   - a kubectl on PATH within one minor version of the pinned Kubernetes.
//
// No Docker, kind or setup-envtest download is needed: everything comes from the Go
// module proxy. A stamp file (bin/.versions) records what the binaries were built
// from (versions, Go, the sources of local-cluster, the binaries reused); when it
// matches, nothing is done. Progress is printed as it goes.
//
// Run it from integration/ (or pass -dir):
//
//	go run ./cmd/build-control-plane
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// stampFormat changes whenever the way binaries are built changes (flags, list of
// binaries), so that old binaries are rebuilt even if the versions stayed the same.
const stampFormat = "3"

// stampFile sits next to the binaries and records what they were built from.
const stampFile = ".versions"

// heartbeat is how often a long build reports that it is still busy.
const heartbeat = 20 * time.Second

// localCluster is the multi-call binary of the Kubernetes commands.
const (
	localCluster    = "local-cluster"
	localClusterPkg = "./cmd/local-cluster"
	kubernetes      = "k8s.io/kubernetes"
	etcdModule      = "go.etcd.io/etcd/server/v3"
)

// command is one executable the harness runs from bin/.
type command struct {
	name string
	// tag leaves the command out of local-cluster when another binary provides it;
	// empty for etcd (its own module) and hollow-kubelet (always ours).
	tag string
	// version prints the binary's version, to check a binary found elsewhere.
	version []string
}

var commands = []command{
	{name: "etcd", version: []string{"--version"}},
	{name: "kube-apiserver", tag: "no_kube_apiserver", version: []string{"--version"}},
	{name: "kube-controller-manager", tag: "no_kube_controller_manager", version: []string{"--version"}},
	{name: "kube-scheduler", tag: "no_kube_scheduler", version: []string{"--version"}},
	{name: "kubectl", tag: "no_kubectl", version: []string{"version", "--client", "-o", "json"}},
	{name: "hollow-kubelet"},
	// The real node's kubelet (cluster.AddRealNode): the packages of hollow-kubelet,
	// so local-cluster always has it.
	{name: "kubelet"},
}

func main() {
	dir := flag.String("dir", ".", "the integration module's directory")
	binDir := flag.String("bin", "", "where to put the binaries (default <dir>/bin)")
	force := flag.Bool("force", false, "rebuild everything, reusing no binary found elsewhere")
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
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	versions, err := moduleVersions(dir)
	if err != nil {
		return err
	}
	goVersion, err := goOutput(dir, "env", "GOVERSION")
	if err != nil {
		return err
	}
	sources, err := sourceHash(dir)
	if err != nil {
		return err
	}
	base := stampFor(versions, goVersion, sources)
	if !force && upToDate(binDir, base) {
		fmt.Printf("control plane in %s is up to date (%s)\n", binDir, oneLine(base))
		return nil
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}

	// Binaries someone else built: found before the stamp is removed, since bin/ may
	// hold some of them.
	reused := map[string]string{}
	if !force {
		reused = findReusable(binDir, versions)
	}
	// Remove the stamp first: an interrupted build must not look finished.
	if err := os.Remove(filepath.Join(binDir, stampFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	started := time.Now()
	fmt.Printf("building the control plane into %s (%s)\n", binDir, oneLine(base))
	for _, c := range commands {
		if path, ok := reused[c.name]; ok {
			fmt.Printf("      %s: using %s\n", c.name, path)
		}
	}

	if _, ok := reused["etcd"]; !ok {
		fmt.Printf("[etcd] building %s@%s\n", etcdModule, versions[etcdModule])
		if err := build(filepath.Join(dir, "etcd"), binDir, "etcd", etcdModule, "-s -w", nil); err != nil {
			return fmt.Errorf("could not build etcd: %w", err)
		}
	}
	var tags, linked []string
	for _, c := range commands {
		switch _, ok := reused[c.name]; {
		case ok && c.tag != "":
			tags = append(tags, c.tag)
		case !ok && c.name != "etcd":
			linked = append(linked, c.name)
		}
	}
	fmt.Printf("[%s] building %s (%s) from %s@%s\n", localCluster, localCluster, strings.Join(linked, ", "), kubernetes, versions[kubernetes])
	if err := build(dir, binDir, localCluster, localClusterPkg, ldflags(versions[kubernetes]), tags); err != nil {
		return fmt.Errorf("could not build %s: %w", localCluster, err)
	}
	for _, c := range commands {
		target, ok := reused[c.name]
		if !ok {
			if c.name == "etcd" {
				continue
			}
			target = localCluster
		}
		if err := link(binDir, c.name, target); err != nil {
			return err
		}
	}
	if err := verify(binDir, versions[kubernetes]); err != nil {
		return err
	}
	stamp := base
	for _, c := range commands {
		if path, ok := reused[c.name]; ok {
			stamp += fmt.Sprintf("reused %s %s\n", c.name, path)
		}
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
	for module, moduleDir := range map[string]string{kubernetes: ".", etcdModule: "etcd"} {
		v, err := goOutput(filepath.Join(dir, moduleDir), "list", "-m", "-f", "{{.Version}}", module)
		if err != nil {
			return nil, fmt.Errorf("could not read the version of %s from %s/go.mod: %w", module, moduleDir, err)
		}
		versions[module] = v
	}
	return versions, nil
}

// sourceHash identifies our own code in local-cluster (the hollow kubelet's wiring)
// and the dependency versions, which the module versions alone do not.
func sourceHash(dir string) (string, error) {
	h := sha256.New()
	files, err := filepath.Glob(filepath.Join(dir, localClusterPkg, "*.go"))
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	for _, f := range append(files, filepath.Join(dir, "go.sum"), filepath.Join(dir, "etcd", "go.sum")) {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(data))
		h.Write(data)
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:16], nil
}

func stampFor(versions map[string]string, goVersion, sources string) string {
	return fmt.Sprintf("format %s\n%s %s\n%s %s\ngo %s\nsources %s\n", stampFormat,
		kubernetes, versions[kubernetes], etcdModule, versions[etcdModule], goVersion, sources)
}

// upToDate reports whether the stamp starts with base (what is reused follows it) and
// every command is there.
func upToDate(binDir, base string) bool {
	old, err := os.ReadFile(filepath.Join(binDir, stampFile))
	if err != nil || !strings.HasPrefix(string(old), base) {
		return false
	}
	for _, c := range commands {
		info, err := os.Stat(filepath.Join(binDir, c.name))
		if err != nil || info.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// findReusable returns, per command, a binary that reports the pinned version: one
// bin/ already holds (a regular file, not a link to local-cluster), else one in
// KUBEBUILDER_ASSETS, else for kubectl one on PATH within one minor version.
func findReusable(binDir string, versions map[string]string) map[string]string {
	found := map[string]string{}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	for _, c := range commands {
		if c.version == nil {
			continue
		}
		want := versions[kubernetes]
		if c.name == "etcd" {
			want = strings.TrimPrefix(versions[etcdModule], "v")
		}
		var candidates []string
		if info, err := os.Lstat(filepath.Join(binDir, c.name)); err == nil && info.Mode().IsRegular() {
			candidates = append(candidates, filepath.Join(binDir, c.name))
		}
		if assets != "" {
			candidates = append(candidates, filepath.Join(assets, c.name))
		}
		for _, path := range candidates {
			if v, err := binaryVersion(path, c); err == nil && v == want {
				found[c.name] = path
				break
			}
		}
		if _, ok := found[c.name]; ok || c.name != "kubectl" {
			continue
		}
		if path, err := exec.LookPath("kubectl"); err == nil {
			if v, err := binaryVersion(path, c); err == nil && withinOneMinor(v, want) {
				found[c.name] = path
			}
		}
	}
	return found
}

// binaryVersion runs the binary's version command: "Kubernetes v1.37.2",
// "etcd Version: 3.7.3", or kubectl's JSON.
func binaryVersion(path string, c command) (string, error) {
	if info, err := os.Stat(path); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable", path)
	}
	out, err := exec.Command(path, c.version...).Output()
	if err != nil {
		return "", err
	}
	if c.name == "kubectl" {
		var v struct {
			ClientVersion struct{ GitVersion string } `json:"clientVersion"`
		}
		if err := json.Unmarshal(out, &v); err != nil {
			return "", err
		}
		return v.ClientVersion.GitVersion, nil
	}
	fields := strings.Fields(strings.SplitN(string(out), "\n", 2)[0])
	if len(fields) == 0 {
		return "", fmt.Errorf("%s printed no version", path)
	}
	return fields[len(fields)-1], nil
}

var releaseVersion = regexp.MustCompile(`^v(\d+)\.(\d+)\.\d+`)

// withinOneMinor reports whether kubectl version v is supported against the pinned
// Kubernetes (the version skew policy: one minor older or newer).
func withinOneMinor(v, pinned string) bool {
	a, b := releaseVersion.FindStringSubmatch(v), releaseVersion.FindStringSubmatch(pinned)
	if a == nil || b == nil || a[1] != b[1] {
		return false
	}
	x, _ := strconv.Atoi(a[2])
	y, _ := strconv.Atoi(b[2])
	return x-y <= 1 && y-x <= 1
}

// link makes bin/<name> run target (local-cluster, or a binary found elsewhere).
func link(binDir, name, target string) error {
	path := filepath.Join(binDir, name)
	if target == path {
		return nil // reused where it is
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ldflags sets what hack/lib/version.sh sets in a release build, so that
// `kubectl version` and `kube-apiserver --version` report the real version: the
// apiserver derives its binary (and default emulation) version from gitVersion.
// The module zip carries no git commit, so gitCommit stays empty. -s -w: no symbol
// table or DWARF, which nobody debugs here and which make the link slower.
func ldflags(version string) string {
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
	}
	flags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		for _, v := range vars {
			flags = append(flags, fmt.Sprintf("-X '%s.%s=%s'", pkg, v[0], v[1]))
		}
	}
	return strings.Join(flags, " ")
}

// build runs `go build -v` and turns its package list into a running count against
// the number of packages the build cache lacks, with an estimate of the time left, so
// a long cold compile shows how far it is. Anything else go prints (errors) is passed
// through as it comes.
func build(moduleDir, binDir, name, pkg, ldflags string, tags []string) error {
	out := filepath.Join(binDir, "."+name+".tmp")
	var tagArgs []string
	if len(tags) > 0 {
		tagArgs = []string{"-tags", strings.Join(tags, ",")}
	}
	total, err := toCompile(moduleDir, pkg, tagArgs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "      (no estimate of the packages to compile: %v)\n", err)
	} else {
		fmt.Printf("      %s: %d packages to compile, the rest are in the build cache\n", name, total)
	}
	args := append([]string{"build", "-v", "-ldflags", ldflags, "-o", out}, tagArgs...)
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = moduleDir
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
				fmt.Printf("      still building %s: %s\n", name, progress(time.Since(started), int(compiled.Load()), total))
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
		name, time.Since(started).Round(time.Second), compiled.Load())
	return os.Rename(out, filepath.Join(binDir, name))
}

// toCompile counts the packages of pkg's build that are not in the build cache: the
// ones `go build -v` will name. It reads the go command's own staleness, so a warm
// cache counts 0 and a cold one counts every dependency, the standard library too.
func toCompile(moduleDir, pkg string, tagArgs []string) (int, error) {
	args := append([]string{"list", "-deps", "-f", "{{if .Stale}}{{.ImportPath}}{{end}}"}, tagArgs...)
	list, err := goOutput(moduleDir, append(args, pkg)...)
	if err != nil {
		return 0, err
	}
	return len(strings.Fields(list)), nil
}

// progress is a heartbeat's text: how many packages of about how many are compiled,
// and the time left at the rate so far (packages differ in size, so it is a guess).
func progress(elapsed time.Duration, compiled, total int) string {
	text := fmt.Sprintf("%s, %d", elapsed.Round(time.Second), compiled)
	if total <= 0 || compiled >= total {
		return text + " packages compiled so far"
	}
	text += fmt.Sprintf(" of about %d packages compiled", total)
	if compiled == 0 {
		return text
	}
	left := time.Duration(float64(elapsed) * float64(total-compiled) / float64(compiled))
	return text + fmt.Sprintf(", about %s left", left.Round(time.Minute))
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

// verify checks that every command runs and that the version stamping worked, since
// a binary that says v0.0.0-master confuses every version-dependent check later on.
func verify(binDir, want string) error {
	for _, c := range commands {
		if c.version == nil {
			continue
		}
		v, err := binaryVersion(filepath.Join(binDir, c.name), c)
		if err != nil {
			return fmt.Errorf("%s %s failed: %w", c.name, strings.Join(c.version, " "), err)
		}
		if c.name != "etcd" && !(v == want || c.name == "kubectl" && withinOneMinor(v, want)) {
			return fmt.Errorf("%s reports %q, want %s: check the -X ldflags", c.name, v, want)
		}
		fmt.Printf("      %s: %s\n", c.name, v)
	}
	out, err := exec.Command(filepath.Join(binDir, "hollow-kubelet"), "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("hollow-kubelet --help failed: %w\n%s", err, out)
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
