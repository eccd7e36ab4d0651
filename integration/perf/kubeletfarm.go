package perf

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
)

// The kubelet's defaults for caching its webhook authentication and authorization
// (--authentication-token-webhook-cache-ttl, --authorization-webhook-cache-authorized-ttl):
// they decide how many TokenReviews and SubjectAccessReviews a probe costs the API
// server.
const (
	kubeletAuthnTTL        = 2 * time.Minute
	kubeletAuthzAllowedTTL = 5 * time.Minute
)

// KubeletFarm serves /configz for many Nodes from this one process, since thousands of
// real kubelets do not fit on one machine: one HTTPS listener on a shared port, each
// node at its own address in 127.0.0.0/8 (which Linux routes to loopback), so that a
// farm needs one socket rather than one per node and is not held to the open-files
// limit. Each node answers like its kubelet — with a certificate for its address
// signed by the farm's CA, the bearer token checked with a TokenReview and the caller
// with a SubjectAccessReview for get nodes/configz, each cached per node for the
// kubelet's default time — and the farm counts what it was asked and what it asked the
// API server.
type KubeletFarm struct {
	// CAFile verifies every node's certificate (serve's --kubelet-ca-file).
	CAFile string

	client kubernetes.Interface
	ca     *x509.Certificate
	caKey  crypto.Signer
	srv    *http.Server
	port   int32
	nodes  []*farmNode
	byIP   map[netip.Addr]*farmNode
	leaves sync.Map // netip.Addr → *tls.Certificate, issued on first use
	wg     sync.WaitGroup

	probes, tokenReviews, accessReviews atomic.Int64
}

type farmNode struct {
	name string
	ip   netip.Addr

	mu      sync.Mutex
	allowed []string
	authn   map[string]farmUser // token → user
	authz   map[string]time.Time
}

type farmUser struct {
	info  authenticationv1.UserInfo
	until time.Time
}

// FarmCounts is what a KubeletFarm has counted so far.
type FarmCounts struct {
	// Probes are /configz reads answered 200.
	Probes int64 `json:"probes"`
	// TokenReviews and SubjectAccessReviews are the calls the kubelets made to the
	// API server to check callers (cache misses).
	TokenReviews         int64 `json:"tokenReviews"`
	SubjectAccessReviews int64 `json:"subjectAccessReviews"`
}

// farmFirstIP is node 0's address; the farm skips addresses ending in .0 and .255.
var farmFirstIP = netip.AddrFrom4([4]byte{127, 1, 0, 1})

// farmNodeIP is node i's address: the i-th address from farmFirstIP whose last octet
// is neither 0 nor 255 (254 a /24), so 127.1.0.1 to 127.255.255.254 hold 16 million.
func farmNodeIP(i int) (netip.Addr, error) {
	const perBlock = 254
	base := farmFirstIP.As4()
	block := int(base[1])<<8 | int(base[2])
	block += i / perBlock
	if i < 0 || block > 0xffff {
		return netip.Addr{}, fmt.Errorf("kubelet farm: node %d has no address left in 127.0.0.0/8; serve fewer nodes", i)
	}
	return netip.AddrFrom4([4]byte{127, byte(block >> 8), byte(block), byte(1 + i%perBlock)}), nil
}

// StartKubeletFarm serves each named node; allowed(i) is what node i allows.
// client makes the TokenReviews and SubjectAccessReviews; dir receives the CA file.
func StartKubeletFarm(client kubernetes.Interface, dir string, names []string, allowed func(i int) []string) (*KubeletFarm, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "kubelet-farm-ca"}, caKey)
	if err != nil {
		return nil, err
	}
	f := &KubeletFarm{CAFile: filepath.Join(dir, "kubelet-farm-ca.crt"), client: client, ca: ca, caKey: caKey, byIP: make(map[netip.Addr]*farmNode, len(names))}
	caPEM, err := certutil.EncodeCertificates(ca)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.CAFile, caPEM, 0o600); err != nil {
		return nil, err
	}
	for i, name := range names {
		ip, err := farmNodeIP(i)
		if err != nil {
			return nil, err
		}
		n := &farmNode{name: name, ip: ip, allowed: allowed(i), authn: map[string]farmUser{}, authz: map[string]time.Time{}}
		f.nodes = append(f.nodes, n)
		f.byIP[ip] = n
	}
	// All of 127.0.0.0/8 reaches a socket bound to every address; loopbackOnly turns
	// away a connection from anywhere else before its handshake.
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		return nil, fmt.Errorf("kubelet farm: could not listen: %w", err)
	}
	f.port = int32(ln.Addr().(*net.TCPAddr).Port)
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second, TLSConfig: &tls.Config{GetCertificate: f.certificate, MinVersion: tls.VersionTLS12}}
	f.wg.Go(func() { _ = f.srv.ServeTLS(loopbackOnly{ln}, "", "") })
	return f, nil
}

// certificate is the serving certificate of the node the connection came in for: one
// for its address, issued by the farm's CA the first time it is asked for (a client
// sends no server name for an IP address, so the local address says which node).
func (f *KubeletFarm) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	n := f.nodeAt(hello.Conn.LocalAddr())
	if n == nil {
		return nil, fmt.Errorf("kubelet farm: no node at %s", hello.Conn.LocalAddr())
	}
	if c, ok := f.leaves.Load(n.ip); ok {
		return c.(*tls.Certificate), nil
	}
	c, err := f.issue(n.ip)
	if err != nil {
		return nil, fmt.Errorf("kubelet farm: could not issue the certificate of %s: %w", n.ip, err)
	}
	got, _ := f.leaves.LoadOrStore(n.ip, c)
	return got.(*tls.Certificate), nil
}

// issue signs a serving certificate for ip with the farm's CA.
func (f *KubeletFarm) issue(ip netip.Addr) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: ip.String()},
		IPAddresses:  []net.IP{ip.AsSlice()},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, f.ca, key.Public(), f.caKey)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// nodeAt is the node whose address a connection came in on, or nil.
func (f *KubeletFarm) nodeAt(local net.Addr) *farmNode {
	addr, ok := local.(*net.TCPAddr)
	if !ok {
		return nil
	}
	ip, ok := netip.AddrFromSlice(addr.IP)
	if !ok {
		return nil
	}
	return f.byIP[ip.Unmap()]
}

// loopbackOnly accepts connections from loopback addresses only.
type loopbackOnly struct{ net.Listener }

func (l loopbackOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
			return c, nil
		}
		_ = c.Close()
	}
}

// Address is node i's InternalIP and kubelet port.
func (f *KubeletFarm) Address(i int) (string, int32) { return f.nodes[i].ip.String(), f.port }

// SetAllowed changes what node i allows, as a kubelet restarted with a new
// --allowed-unsafe-sysctls would.
func (f *KubeletFarm) SetAllowed(i int, allowed []string) {
	n := f.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	n.allowed = allowed
}

// Counts returns the counters so far.
func (f *KubeletFarm) Counts() FarmCounts {
	return FarmCounts{Probes: f.probes.Load(), TokenReviews: f.tokenReviews.Load(), SubjectAccessReviews: f.accessReviews.Load()}
}

// Close stops the listener.
func (f *KubeletFarm) Close() {
	_ = f.srv.Close()
	f.wg.Wait()
}

// ServeHTTP answers as the kubelet whose address the request came in on.
func (f *KubeletFarm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	n := f.nodeAt(local)
	if n == nil {
		http.NotFound(w, r)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	user, err := f.authenticate(r.Context(), n, token)
	if err != nil {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if err := f.authorize(r.Context(), n, user); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if r.URL.Path != "/configz" {
		http.NotFound(w, r)
		return
	}
	n.mu.Lock()
	allowed := n.allowed
	n.mu.Unlock()
	f.probes.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"kubeletconfig": map[string]any{"allowedUnsafeSysctls": allowed, "maxPods": 110}})
}

func (f *KubeletFarm) authenticate(ctx context.Context, n *farmNode, token string) (authenticationv1.UserInfo, error) {
	n.mu.Lock()
	u, ok := n.authn[token]
	n.mu.Unlock()
	if ok && time.Now().Before(u.until) {
		return u.info, nil
	}
	f.tokenReviews.Add(1)
	tr, err := f.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	if !tr.Status.Authenticated {
		return authenticationv1.UserInfo{}, fmt.Errorf("token not authenticated: %s", tr.Status.Error)
	}
	n.mu.Lock()
	n.authn[token] = farmUser{info: tr.Status.User, until: time.Now().Add(kubeletAuthnTTL)}
	n.mu.Unlock()
	return tr.Status.User, nil
}

func (f *KubeletFarm) authorize(ctx context.Context, n *farmNode, user authenticationv1.UserInfo) error {
	n.mu.Lock()
	until, ok := n.authz[user.Username]
	n.mu.Unlock()
	if ok && time.Now().Before(until) {
		return nil
	}
	f.accessReviews.Add(1)
	sar, err := f.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, Groups: user.Groups, UID: user.UID,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "configz", Name: n.name},
	}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if !sar.Status.Allowed {
		// Not cached (the kubelet keeps denials 30s): a denied caller costs a review
		// each time, which only makes the count higher.
		return fmt.Errorf("Forbidden (user=%s, verb=get, resource=nodes, subresource=configz)", user.Username)
	}
	n.mu.Lock()
	n.authz[user.Username] = time.Now().Add(kubeletAuthzAllowedTTL)
	n.mu.Unlock()
	return nil
}

// FarmNodeStatus is the status of the farm's node i: its InternalIP and kubelet
// port, versions, a boot ID and Ready.
func (f *KubeletFarm) FarmNodeStatus(i int, kubeletVersion, kernelVersion string) corev1.NodeStatus {
	now := metav1.Now()
	return corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: f.nodes[i].ip.String()}, {Type: corev1.NodeHostName, Address: f.nodes[i].name}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: f.port}},
		NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: kubeletVersion, KernelVersion: kernelVersion, BootID: "boot-1", OperatingSystem: "linux", Architecture: "amd64"},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}},
	}
}
