package cluster

// This file makes the simulated kubelets serve /configz like real ones, for discovery
// tests: HTTPS on the node's own address (127.0.0.x) with a serving certificate from a
// kubelet CA (not the API server's), the caller's bearer token checked with a
// TokenReview and its permission with a SubjectAccessReview for nodes/configz (get),
// as the kubelet's webhook authenticator and authorizer do.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
	"k8s.io/kubernetes/pkg/kubelet/sysctl"
)

// kubeletCA signs every simulated kubelet's serving certificate in this process.
var kubeletCA struct {
	once sync.Once
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	err  error
}

func loadKubeletCA() error {
	kubeletCA.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			kubeletCA.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "simulated-kubelet-ca"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			kubeletCA.err = err
			return
		}
		kubeletCA.cert, _ = x509.ParseCertificate(der)
		kubeletCA.key = key
		kubeletCA.pem = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	})
	return kubeletCA.err
}

// KubeletCAFile writes the CA of the simulated kubelets' serving certificates into the
// work directory and returns its path, for serve's --kubelet-ca-file.
func (c *Cluster) KubeletCAFile() (string, error) {
	if err := loadKubeletCA(); err != nil {
		return "", err
	}
	path := filepath.Join(c.WorkDir, "kubelet-ca.crt")
	return path, os.WriteFile(path, kubeletCA.pem, 0o600)
}

// nextKubeletIP hands out 127.0.0.2, 127.0.0.3, … so each node has its own address.
var nextKubeletIP atomic.Uint32

func kubeletIP() string {
	n := nextKubeletIP.Add(1)
	return fmt.Sprintf("127.0.%d.%d", (n/250)%250, 2+n%250)
}

// configzServer is one node's kubelet HTTPS endpoint.
type configzServer struct {
	node   string
	client kubernetes.Interface
	cert   tls.Certificate
	addr   string // ip:port, fixed after the first start

	mu      sync.Mutex
	allowed []string
	srv     *http.Server
}

func newConfigzServer(client kubernetes.Interface, node string, allowed []string) (*configzServer, error) {
	if err := loadKubeletCA(); err != nil {
		return nil, err
	}
	ip := kubeletIP()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: node},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{node}, IPAddresses: []net.IP{net.ParseIP(ip)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, kubeletCA.cert, &key.PublicKey, kubeletCA.key)
	if err != nil {
		return nil, err
	}
	s := &configzServer{node: node, client: client, allowed: allowed, addr: net.JoinHostPort(ip, "0"),
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
	return s, s.start()
}

func (s *configzServer) start() error {
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("simulated kubelet %s could not listen on %s: %w", s.node, s.addr, err)
	}
	s.addr = l.Addr().String()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return nil
}

func (s *configzServer) stop() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (s *configzServer) port() int32 {
	_, p, _ := net.SplitHostPort(s.addr)
	n, _ := strconv.Atoi(p)
	return int32(n)
}

func (s *configzServer) ip() string {
	h, _, _ := net.SplitHostPort(s.addr)
	return h
}

// ServeHTTP authenticates and authorizes like the kubelet's server.go: TokenReview,
// then SubjectAccessReview for the configz subresource of this node.
func (s *configzServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/configz" {
		http.NotFound(w, r)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	ctx := r.Context()
	tr, err := s.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil || !tr.Status.Authenticated {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	u := tr.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := s.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "configz", Name: s.node},
	}}, metav1.CreateOptions{})
	if err != nil {
		http.Error(w, "authorization error: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !sar.Status.Allowed {
		http.Error(w, fmt.Sprintf("Forbidden (user=%s, verb=get, resource=nodes, subresource=configz)", u.Username), http.StatusForbidden)
		return
	}
	s.mu.Lock()
	allowed := append([]string{}, s.allowed...)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"kubeletconfig": map[string]any{
		"allowedUnsafeSysctls": allowed, "maxPods": 110, "serverTLSBootstrap": false,
	}})
}

// startConfigz starts a /configz server per node of the pool.
func (k *kubelet) startConfigz() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.configz = map[string]*configzServer{}
	for _, name := range k.pool.NodeNames {
		allowed := k.pool.Spec.AllowedUnsafeSysctls
		if own, ok := k.pool.Spec.NodeAllowedUnsafeSysctls[name]; ok {
			allowed = own
		}
		s, err := newConfigzServer(k.client, name, allowed)
		if err != nil {
			return err
		}
		k.configz[name] = s
	}
	return nil
}

func (k *kubelet) stopConfigz() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, s := range k.configz {
		s.stop()
	}
}

// admitHandler is the pool's current sysctl admit handler.
func (k *kubelet) admitHandler() lifecycle.PodAdmitHandler {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.allowlist
}

// configzStatus points a Node's addresses and kubelet port at its /configz server.
func (c *Cluster) configzStatus(pool *Pool, name string, status *corev1.NodeStatus) {
	s := c.configzServer(name)
	if s == nil {
		return
	}
	status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: s.ip()}, {Type: corev1.NodeHostName, Address: name}}
	status.DaemonEndpoints.KubeletEndpoint.Port = s.port()
	status.NodeInfo.BootID = string(uuid.NewUUID())
}

func (c *Cluster) configzServer(node string) *configzServer {
	c.mu.Lock()
	kubelets := append([]*kubelet(nil), c.kubelets...)
	c.mu.Unlock()
	for _, k := range kubelets {
		k.mu.Lock()
		s := k.configz[node]
		k.mu.Unlock()
		if s != nil {
			return s
		}
	}
	return nil
}

func (c *Cluster) kubeletOfPool(pool string) *kubelet {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.kubelets {
		if k.pool.Spec.Name == pool {
			return k
		}
	}
	return nil
}

// RestartPoolKubelets changes what a pool's kubelets allow and restarts them, as an
// admin does after editing --allowed-unsafe-sysctls: admission uses the new list, each
// node's /configz serves it, and each Node gets a new boot ID and a Ready transition.
func (c *Cluster) RestartPoolKubelets(ctx context.Context, pool string, allowed []string) error {
	k := c.kubeletOfPool(pool)
	if k == nil {
		return fmt.Errorf("no pool %q", pool)
	}
	safe, err := safeSysctlsForKernel(ctx, k.pool.Spec.KernelVersion)
	if err != nil {
		return err
	}
	handler, err := sysctl.NewAllowlist(append(safe, allowed...))
	if err != nil {
		return fmt.Errorf("kubelet would not start: %w", err)
	}
	k.mu.Lock()
	k.allowlist = handler
	k.pool.Spec.AllowedUnsafeSysctls = allowed
	k.mu.Unlock()
	for _, name := range k.pool.NodeNames {
		if err := c.RestartKubelet(ctx, name, allowed); err != nil {
			return err
		}
	}
	return nil
}

// RestartKubelet restarts one node's simulated kubelet with allowed as what its
// /configz reports (admission stays the pool's).
func (c *Cluster) RestartKubelet(ctx context.Context, node string, allowed []string) error {
	s := c.configzServer(node)
	if s == nil {
		return fmt.Errorf("node %s serves no /configz (PoolSpec.ServeConfigz)", node)
	}
	s.stop()
	s.mu.Lock()
	s.allowed = allowed
	s.mu.Unlock()
	if err := s.start(); err != nil {
		return err
	}
	return c.touchNodeStatus(ctx, node)
}

// StopKubelet makes a node's kubelet unreachable (its /configz stops answering); the
// Node stays Ready, as it does until the node lifecycle controller notices.
func (c *Cluster) StopKubelet(node string) error {
	s := c.configzServer(node)
	if s == nil {
		return errors.New("node " + node + " serves no /configz")
	}
	s.stop()
	return nil
}

// touchNodeStatus posts what a restarted kubelet posts: a new boot ID and a fresh Ready
// transition.
func (c *Cluster) touchNodeStatus(ctx context.Context, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.NodeInfo.BootID = string(uuid.NewUUID())
		now := metav1.Now()
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				n.Status.Conditions[i].LastTransitionTime = now
				n.Status.Conditions[i].LastHeartbeatTime = now
			}
		}
		_, err = c.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}
