package main

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// TestKubeClientServesEveryGroupWeCall: the client serve and the commands build has a
// client for each API group they call, all sharing one rate limiter of --kube-api-qps
// and --kube-api-burst, as kubernetes.NewForConfig's groups share theirs.
func TestKubeClientServesEveryGroupWeCall(t *testing.T) {
	client, err := newKubeClient(&rest.Config{Host: "https://api.example:6443", QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]rest.Interface{
		"core/v1":                      client.CoreV1().RESTClient(),
		"coordination.k8s.io/v1":       client.CoordinationV1().RESTClient(),
		"events.k8s.io/v1":             client.EventsV1().RESTClient(),
		"admissionregistration.k8s.io": client.AdmissionregistrationV1().RESTClient(),
		"apps/v1":                      client.AppsV1().RESTClient(),
		"batch/v1":                     client.BatchV1().RESTClient(),
		"discovery (/version)":         client.Discovery().RESTClient(),
	}
	limiter := client.CoreV1().RESTClient().GetRateLimiter()
	if limiter == nil || limiter.QPS() != 50 {
		t.Fatalf("core/v1 rate limiter %v, want one of 50 QPS", limiter)
	}
	for group, rc := range groups {
		if rc.GetRateLimiter() != limiter {
			t.Errorf("%s has a rate limiter of its own; want the one all groups share", group)
		}
	}
}

// TestTheBinaryLinksOnlyTheAPIGroupsItCalls builds the binary and reads its symbols:
// it must link neither client-go's SharedInformerFactory (which reaches an informer,
// lister and client for every resource of the API) nor kubernetes.NewForConfig's
// clientset (a client for every group). Either one grew the binary from 47 to 86 MB,
// and with it each replica's resident memory.
func TestTheBinaryLinksOnlyTheAPIGroupsItCalls(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sysctl-placement")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }() // read only: nothing is lost
	symbols, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	unwanted := map[string]string{
		"k8s.io/client-go/informers.(*sharedInformerFactory).":  "a SharedInformerFactory: build each informer with its own constructor",
		"k8s.io/client-go/kubernetes.NewForConfigAndClient":     "kubernetes.NewForConfig: use newKubeClient",
		"k8s.io/client-go/kubernetes/typed/storage/v1.(*":       "the storage.k8s.io client, which nothing here calls",
		"k8s.io/client-go/kubernetes/typed/networking/v1.(*":    "the networking.k8s.io client, which nothing here calls",
		"k8s.io/client-go/informers/apps/v1.(*deploymentInform": "an apps informer, which nothing here runs",
	}
	found := map[string]bool{}
	for _, s := range symbols {
		for prefix := range unwanted {
			if strings.HasPrefix(s.Name, prefix) {
				found[prefix] = true
			}
		}
	}
	for prefix, why := range unwanted {
		if found[prefix] {
			t.Errorf("the binary links %s (symbols %s…)", why, prefix)
		}
	}
	if !slices.ContainsFunc(symbols, func(s elf.Symbol) bool {
		return strings.HasPrefix(s.Name, "k8s.io/client-go/kubernetes/typed/core/v1.")
	}) {
		t.Error("no symbol of the core/v1 client: the binary's symbols are not what this test expects to read")
	}
	t.Run("it links only the modules listed in testdata/modules.txt", func(t *testing.T) {
		linkedModulesAreListed(t, bin)
	})
}

// modulesFile lists, one path a line, every module the built binary links. A new one
// must be added there on purpose: the last unnoticed growth (47 to 86 MB, and as much
// resident memory per replica) came in through an import, not a go.mod line.
const modulesFile = "testdata/modules.txt"

// linkedModulesAreListed compares the modules bin links (its build information) with
// modulesFile; UPDATE_GOLDEN=1 rewrites the file.
func linkedModulesAreListed(t *testing.T, bin string) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var linked []string
	for _, d := range info.Deps {
		linked = append(linked, d.Path)
	}
	slices.Sort(linked)
	got := strings.Join(linked, "\n") + "\n"
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(modulesFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(modulesFile)
	if err != nil {
		t.Fatalf("%v (run UPDATE_GOLDEN=1 go test -run TestTheBinaryLinksOnlyTheAPIGroupsItCalls ./cmd/sysctl-placement/)", err)
	}
	want := strings.Fields(string(data))
	added, removed := slices.DeleteFunc(slices.Clone(linked), func(m string) bool { return slices.Contains(want, m) }),
		slices.DeleteFunc(slices.Clone(want), func(m string) bool { return slices.Contains(linked, m) })
	if len(added) > 0 || len(removed) > 0 {
		t.Errorf("the binary now links %d modules; added %v, gone %v. Each module added grows the binary and every replica's memory: "+
			"keep it out, or list it in %s (UPDATE_GOLDEN=1) and say why in the commit", len(linked), added, removed, modulesFile)
	}
}
