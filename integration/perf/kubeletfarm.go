package perf

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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
// real kubelets do not fit on one machine: one HTTPS listener per node on 127.0.0.1,
// each answering like that node's kubelet — the bearer token checked with a
// TokenReview and the caller with a SubjectAccessReview for get nodes/configz, each
// cached per node for the kubelet's default time — and counting what it was asked
// and what it asked the API server.
type KubeletFarm struct {
	// CAFile verifies every listener's certificate (serve's --kubelet-ca-file).
	CAFile string

	client kubernetes.Interface
	srv    *http.Server
	nodes  []*farmNode
	byPort map[int]*farmNode
	wg     sync.WaitGroup

	probes, tokenReviews, accessReviews atomic.Int64
}

type farmNode struct {
	name string
	port int32

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

// StartKubeletFarm listens for each named node; allowed(i) is what node i allows.
// client makes the TokenReviews and SubjectAccessReviews; dir receives the CA file.
func StartKubeletFarm(client kubernetes.Interface, dir string, names []string, allowed func(i int) []string) (*KubeletFarm, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	f := &KubeletFarm{CAFile: filepath.Join(dir, "kubelet-farm-ca.crt"), client: client, byPort: map[int]*farmNode{}}
	if err := os.WriteFile(f.CAFile, certPEM, 0o600); err != nil {
		return nil, err
	}
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	for i, name := range names {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("kubelet farm: could not listen for node %d of %d (raise the open files limit): %w", i, len(names), err)
		}
		n := &farmNode{name: name, port: int32(ln.Addr().(*net.TCPAddr).Port), allowed: allowed(i), authn: map[string]farmUser{}, authz: map[string]time.Time{}}
		f.nodes = append(f.nodes, n)
		f.byPort[int(n.port)] = n
		f.wg.Go(func() { _ = f.srv.ServeTLS(ln, "", "") })
	}
	return f, nil
}

// Port is the kubelet port of node i.
func (f *KubeletFarm) Port(i int) int32 { return f.nodes[i].port }

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

// Close stops every listener.
func (f *KubeletFarm) Close() {
	_ = f.srv.Close()
	f.wg.Wait()
}

// ServeHTTP answers as the kubelet whose port the request came in on.
func (f *KubeletFarm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, _ := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if addr == nil || f.byPort[addr.Port] == nil {
		http.NotFound(w, r)
		return
	}
	n := f.byPort[addr.Port]
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

// FarmNodeStatus is the status of a Node served by the farm's listener i: its
// InternalIP and kubelet port, versions, a boot ID and Ready.
func (f *KubeletFarm) FarmNodeStatus(i int, kubeletVersion, kernelVersion string) corev1.NodeStatus {
	now := metav1.Now()
	return corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: f.nodes[i].name}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: f.nodes[i].port}},
		NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: kubeletVersion, KernelVersion: kernelVersion, BootID: "boot-1", OperatingSystem: "linux", Architecture: "amd64"},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}},
	}
}
