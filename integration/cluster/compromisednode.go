package cluster

// A compromised node: a Node of a pool whose "kubelet" is the test's own HTTPS server,
// with a serving certificate from the kubelet CA as a real node's would have. It keeps
// the bearer token of every request and answers /configz with whatever allowlist the
// test gives it: what an attacker who controls a node sees of discovery and can tell it.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// CompromisedNode is a Node whose kubelet API the test serves.
type CompromisedNode struct {
	// Name is the Node's name.
	Name string

	srv     *httptest.Server
	mu      sync.Mutex
	tokens  []string
	allowed []string
}

// StartCompromisedNode registers a Node named name in pool (label PoolLabel) whose
// InternalIP and kubelet port lead to a server of this process, serving /configz with
// allowed to anyone, over TLS with a certificate the kubelet CA signed. Close stops it.
func (c *Cluster) StartCompromisedNode(ctx context.Context, name, pool string, allowed ...string) (*CompromisedNode, error) {
	const ip = "127.0.0.1"
	dir := filepath.Join(c.WorkDir, "compromised-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certFile, keyFile, err := writeServingCert(dir, name, ip)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	n := &CompromisedNode{Name: name, allowed: allowed}
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(n.serve))
	n.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	n.srv.StartTLS()
	_, port, _ := net.SplitHostPort(n.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{PoolLabel: pool}}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		n.srv.Close()
		return nil, err
	}
	// Applied, not updated: the node lifecycle controller taints a new Node at once,
	// and an Update carrying the creation's resourceVersion would then conflict.
	status := corev1ac.NodeStatus().
		WithAddresses(corev1ac.NodeAddress().WithType(corev1.NodeInternalIP).WithAddress(ip)).
		WithDaemonEndpoints(corev1ac.NodeDaemonEndpoints().WithKubeletEndpoint(corev1ac.DaemonEndpoint().WithPort(int32(p)))).
		WithNodeInfo(corev1ac.NodeSystemInfo().WithKubeletVersion("v1.37.2").WithKernelVersion("6.8.0").WithBootID("compromised"))
	if _, err := c.Client.CoreV1().Nodes().ApplyStatus(ctx, corev1ac.Node(name).WithStatus(status), metav1.ApplyOptions{FieldManager: "compromised-node", Force: true}); err != nil {
		n.srv.Close()
		return nil, err
	}
	return n, nil
}

func (n *CompromisedNode) serve(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		n.tokens = append(n.tokens, token)
	}
	if r.URL.Path != "/configz" {
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"kubeletconfig": map[string]any{"allowedUnsafeSysctls": n.allowed}})
}

// Tokens returns the bearer tokens the node was sent, oldest first.
func (n *CompromisedNode) Tokens() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.tokens...)
}

// Close stops the node's server; the Node stays.
func (n *CompromisedNode) Close() { n.srv.Close() }
