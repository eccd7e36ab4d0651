package discovery

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// fakeKubelet is an HTTPS /configz endpoint that checks the bearer token.
type fakeKubelet struct {
	srv     *httptest.Server
	mu      sync.Mutex
	allowed []string
}

func startFakeKubelet(t *testing.T, token string, allowed ...string) *fakeKubelet {
	k := &fakeKubelet{allowed: allowed}
	k.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path != "/configz" {
			http.NotFound(w, r)
			return
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"kubeletconfig": map[string]any{"allowedUnsafeSysctls": k.allowed, "maxPods": 110}})
	}))
	t.Cleanup(k.srv.Close)
	return k
}

// caFile writes the test server's certificate as a CA bundle.
func (k *fakeKubelet) caFile(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "kubelet-ca.crt")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// servedBy points a node's InternalIP and kubelet port at k.
func servedBy(k *fakeKubelet) func(*corev1.Node) {
	return func(n *corev1.Node) {
		host, port, _ := net.SplitHostPort(k.srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: host}, {Type: corev1.NodeHostName, Address: n.Name}}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(p)
		n.Status.NodeInfo.BootID = "boot-1"
	}
}

type discoveryFixture struct {
	client   *fake.Clientset
	combiner *Combiner
	disc     *Discoverer
}

func startDiscovery(t *testing.T, prober Prober, nodes ...*corev1.Node) *discoveryFixture {
	t.Helper()
	client := fake.NewClientset()
	for _, n := range nodes {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return startReplica(t, client, Config{Prober: prober})
}

// startReplica runs a Discoverer with cfg (its client, pool label, source, publisher
// and batch filled in) feeding a Combiner, and waits until it is ready.
func startReplica(t *testing.T, client *fake.Clientset, cfg Config) *discoveryFixture {
	t.Helper()
	f := launchReplica(t, client, cfg)
	waitCtx, stop := context.WithTimeout(t.Context(), 10*time.Second)
	defer stop()
	if err := f.disc.WaitForFirstPass(waitCtx); err != nil {
		t.Fatal(err)
	}
	return f
}

// launchReplica is startReplica without waiting until the replica is ready.
func launchReplica(t *testing.T, client *fake.Clientset, cfg Config) *discoveryFixture {
	t.Helper()
	f := &discoveryFixture{client: client}
	combiner, err := NewCombiner(CombinerConfig{Sink: &recordingSink{}})
	if err != nil {
		t.Fatal(err)
	}
	f.combiner = combiner
	static, err := scheduling.Compile(&scheduling.PlacementConfig{
		TypeMeta:  metav1.TypeMeta{APIVersion: scheduling.ConfigAPIVersion, Kind: scheduling.ConfigKind},
		Discovery: &scheduling.Discovery{PoolLabel: testLabel},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.combiner.Set(static)
	cfg.Client, cfg.PoolLabel, cfg.Source, cfg.Publisher, cfg.Batch = client, testLabel, SourceConfigz, f.combiner, time.Millisecond
	f.disc, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.disc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// eventually polls cond until it holds or fails the test after 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting until %s", what)
	}
}

func poolNamed(report []PoolStatus, name string) (PoolStatus, bool) {
	for _, p := range report {
		if p.Pool.Name == name {
			return p, true
		}
	}
	return PoolStatus{}, false
}

func TestDiscoverer(t *testing.T) {
	t.Run("kubelets are read over TLS at /configz with the token", func(t *testing.T) {
		const token = "sa-token"
		k1 := startFakeKubelet(t, token, "kernel.shm*", "kernel.sem")
		k2 := startFakeKubelet(t, token, "kernel.shmmax", "kernel.sem")
		k3 := startFakeKubelet(t, token, "net.core.somaxconn")
		// httptest servers share one certificate, so one CA file verifies all three.
		prober, err := NewConfigzProber(ProberConfig{Rest: &rest.Config{BearerToken: token}, CAFile: k1.caFile(t)})
		if err != nil {
			t.Fatal(err)
		}
		f := startDiscovery(t, prober,
			node("ipc-1", "ipc", servedBy(k1)), node("ipc-2", "ipc", servedBy(k2)), node("net-1", "net", servedBy(k3)))

		t.Run("the first pass reads every kubelet and nodes that disagree give the intersection", func(t *testing.T) {
			ipc, ok := poolNamed(f.combiner.Report(), "ipc")
			if !ok {
				t.Fatalf("no ipc pool in %+v", f.combiner.Report())
			}
			if want := []string{"kernel.sem", "kernel.shmmax"}; !reflect.DeepEqual(ipc.Pool.AllowedUnsafeSysctls, want) {
				t.Errorf("ipc allows %v, want %v", ipc.Pool.AllowedUnsafeSysctls, want)
			}
			if !reflect.DeepEqual(problemKinds(ipc), []ProblemKind{ProblemNodesDisagree}) {
				t.Errorf("ipc problems = %v, want NodesDisagree", ipc.Problems)
			}
			net, _ := poolNamed(f.combiner.Report(), "net")
			if !reflect.DeepEqual(net.Pool.AllowedUnsafeSysctls, []string{"net.core.somaxconn"}) || net.Source != SourceConfigz {
				t.Errorf("net = %+v, want [net.core.somaxconn] from configz", net)
			}
		})

		t.Run("a restarted kubelet is read again", func(t *testing.T) {
			k3.mu.Lock()
			k3.allowed = []string{"net.core.somaxconn", "net.ipv4.tcp_*"}
			k3.mu.Unlock()
			restart(t, f, "net-1")
			eventually(t, "net allows net.ipv4.tcp_*", func() bool {
				net, _ := poolNamed(f.combiner.Report(), "net")
				return reflect.DeepEqual(net.Pool.AllowedUnsafeSysctls, []string{"net.core.somaxconn", "net.ipv4.tcp_*"})
			})
		})

		t.Run("an unreachable kubelet keeps its last known allowlist and is reported", func(t *testing.T) {
			k3.srv.Close()
			restart(t, f, "net-1")
			eventually(t, "net reports KubeletUnreachable", func() bool {
				net, _ := poolNamed(f.combiner.Report(), "net")
				return reflect.DeepEqual(problemKinds(net), []ProblemKind{ProblemKubeletUnreachable})
			})
			net, _ := poolNamed(f.combiner.Report(), "net")
			if !reflect.DeepEqual(net.Pool.AllowedUnsafeSysctls, []string{"net.core.somaxconn", "net.ipv4.tcp_*"}) {
				t.Errorf("net allows %v, want the last known list", net.Pool.AllowedUnsafeSysctls)
			}
		})
	})

	t.Run("a kubelet refusing the token is reported and does not block readiness", func(t *testing.T) {
		k := startFakeKubelet(t, "the-right-token", "kernel.sem")
		prober, err := NewConfigzProber(ProberConfig{Rest: &rest.Config{BearerToken: "a-wrong-token"}, Insecure: true})
		if err != nil {
			t.Fatal(err)
		}
		f := startDiscovery(t, prober, node("ipc-1", "ipc", servedBy(k)))
		ipc, _ := poolNamed(f.combiner.Report(), "ipc")
		if len(ipc.Pool.AllowedUnsafeSysctls) != 0 || !reflect.DeepEqual(problemKinds(ipc), []ProblemKind{ProblemKubeletUnreachable}) {
			t.Errorf("ipc = %+v, want no unsafe sysctls and KubeletUnreachable", ipc)
		}
	})
}

// restart does what a kubelet restart does to its Node: a new boot ID.
func restart(t *testing.T, f *discoveryFixture, name string) {
	t.Helper()
	n, err := f.client.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.NodeInfo.BootID += "+"
	if _, err := f.client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
