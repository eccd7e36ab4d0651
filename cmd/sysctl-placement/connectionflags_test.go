package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/pflag"
)

// apiServer records the requests a command sends and answers each with NotFound,
// which uninstall-webhooks takes as "already gone": the command succeeds and what
// reached the server is what a test checks.
type apiServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	s := &apiServer{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.Clone(r.Context()))
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}`))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) received() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// twoClusterKubeconfig has the contexts "main" (current: cluster main, user main with
// token main-token) and "other" (cluster other, user other with token other-token).
// The servers are httptest's TLS servers (client-go sends no token over plain HTTP),
// whose certificates are not checked.
func twoClusterKubeconfig(t *testing.T, main, other string) string {
	return writeFile(t, "kubeconfig", `apiVersion: v1
kind: Config
current-context: main
clusters:
- {name: main, cluster: {server: "`+main+`", insecure-skip-tls-verify: true}}
- {name: other, cluster: {server: "`+other+`", insecure-skip-tls-verify: true}}
users:
- {name: main, user: {token: main-token}}
- {name: other, user: {token: other-token}}
contexts:
- {name: main, context: {cluster: main, user: main}}
- {name: other, context: {cluster: other, user: other}}
`)
}

func TestKubectlConnectionFlagsReachTheAPIServer(t *testing.T) {
	main, other := newAPIServer(t), newAPIServer(t)
	kubeconfig := twoClusterKubeconfig(t, main.URL, other.URL)
	header := func(name string, want ...string) func(*http.Request) string {
		return func(r *http.Request) string {
			if got := r.Header.Values(name); !slices.Equal(got, want) {
				return name + ": " + strings.Join(got, ", ") + ", want " + strings.Join(want, ", ")
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name   string
		args   []string
		server *apiServer // where the requests must arrive
		check  func(*http.Request) string
	}{
		{"without flags the kubeconfig's current context is used", nil, main, header("Authorization", "Bearer main-token")},
		{"--as reaches the API server as Impersonate-User", []string{"--as", "alice"}, main, header("Impersonate-User", "alice")},
		{"--as-group, repeated, sends every group as Impersonate-Group", []string{"--as", "alice", "--as-group", "team-a", "--as-group", "team-b"}, main, header("Impersonate-Group", "team-a", "team-b")},
		{"--as-uid sends Impersonate-Uid", []string{"--as", "alice", "--as-uid", "1234"}, main, header("Impersonate-Uid", "1234")},
		{"--token replaces the kubeconfig user's token", []string{"--token", "flag-token"}, main, header("Authorization", "Bearer flag-token")},
		{"--server sends the requests to another API server", []string{"--server", other.URL}, other, header("Authorization", "Bearer main-token")},
		{"--context picks another context of the kubeconfig", []string{"--context", "other"}, other, header("Authorization", "Bearer other-token")},
		{"--cluster picks another cluster, keeping the context's user", []string{"--cluster", "other"}, other, header("Authorization", "Bearer main-token")},
		{"--user picks another user, keeping the context's cluster", []string{"--user", "other"}, main, header("Authorization", "Bearer other-token")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[*apiServer]int{main: len(main.received()), other: len(other.received())}
			args := append([]string{"uninstall-webhooks", "--kubeconfig", kubeconfig}, tc.args...)
			code, _, errOut := runCommand(t, "", args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, s := range []*apiServer{main, other} {
				got := s.received()[before[s]:]
				if s != tc.server {
					if len(got) != 0 {
						t.Errorf("%d requests went to the wrong server", len(got))
					}
					continue
				}
				if len(got) != 2 {
					t.Fatalf("%d requests arrived, want the two DELETEs", len(got))
				}
				for _, r := range got {
					if problem := tc.check(r); problem != "" {
						t.Errorf("%s %s: %s", r.Method, r.URL.Path, problem)
					}
				}
			}
		})
	}
}

func TestConnectionFlags(t *testing.T) {
	t.Run("the request timeout gives up on an API server that does not answer", func(t *testing.T) {
		// The handler holds each request until the client gives up on it, or the test ends.
		// client-go says "context deadline exceeded" or "Client.Timeout exceeded", by timing.
		ended := make(chan struct{})
		hanging := httptest.NewTLSServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-ended:
			}
		}))
		t.Cleanup(hanging.Close)
		t.Cleanup(func() { close(ended) }) // runs first
		kubeconfig := twoClusterKubeconfig(t, hanging.URL, hanging.URL)
		code, _, errOut := runCommand(t, "", "uninstall-webhooks", "--kubeconfig", kubeconfig, "--request-timeout", "200ms")
		if code == 0 || !strings.Contains(errOut, "timeout=200ms") || !strings.Contains(errOut, "exceeded") {
			t.Errorf("exit %d, stderr %q: want a failure saying the request timed out", code, errOut)
		}
		code, _, errOut = runCommand(t, "", "uninstall-webhooks", "--kubeconfig", kubeconfig, "--request-timeout", "soon")
		if code != 1 || !strings.Contains(errOut, `--request-timeout "soon" is not a duration`) {
			t.Errorf("--request-timeout soon: exit %d, stderr %q; want an error naming the bad value", code, errOut)
		}
	})

	// In a pod, serve uses its service account; a connection flag says the user means
	// another cluster or identity, so the kubeconfig and the flags are used instead.
	t.Run("serve in a pod uses the kubeconfig when a connection flag is given", func(t *testing.T) {
		t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
		t.Setenv("KUBERNETES_SERVICE_PORT", "443")
		kubeconfig := twoClusterKubeconfig(t, "https://main.example:6443", "https://other.example:6443")
		t.Setenv("KUBECONFIG", kubeconfig)
		parse := func(args ...string) *globalOptions {
			g := &globalOptions{}
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			g.addFlags(fs)
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			return g
		}
		// The test machine is no pod: the in-cluster config fails for want of the service
		// account's token file, which shows it was tried.
		if _, err := parse().restConfig(true, "test"); err == nil || !strings.Contains(err.Error(), "in-cluster") {
			t.Errorf("no connection flag: %v, want the in-cluster config tried", err)
		}
		for _, args := range [][]string{{"--context", "other"}, {"--server", "https://other.example:6443"}, {"--as", "alice", "--server", "https://other.example:6443"}} {
			cfg, err := parse(args...).restConfig(true, "test")
			if err != nil || cfg.Host != "https://other.example:6443" {
				t.Errorf("%v: host %v, %v; want the kubeconfig with the flags", args, cfg, err)
			}
		}
	})
}

func TestEveryCommandTakesKubectlsConnectionFlags(t *testing.T) {
	root := newRootCommand(streams{}, "sysctl-placement")
	var names []string
	connection := pflag.NewFlagSet("", pflag.ContinueOnError)
	(&globalOptions{}).addFlags(connection)
	connection.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	for _, want := range []string{"kubeconfig", "context", "cluster", "user", "as", "as-group", "as-uid", "token", "server", "request-timeout", "certificate-authority", "insecure-skip-tls-verify"} {
		if !slices.Contains(names, want) {
			t.Errorf("--%s is not one of the connection flags", want)
		}
	}
	for _, cmd := range root.Commands() {
		for _, name := range names {
			if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil {
				t.Errorf("%s has no --%s", cmd.Name(), name)
			}
		}
	}
	// audit and certs keep their own --namespace, with their own meaning.
	for cmd, shorthand := range map[string]string{"audit": "n", "certs": ""} {
		c, _, err := root.Find([]string{cmd})
		if err != nil {
			t.Fatal(err)
		}
		if f := c.Flags().Lookup("namespace"); f == nil || f.Shorthand != shorthand {
			t.Errorf("%s: --namespace %+v", cmd, f)
		}
	}
}
