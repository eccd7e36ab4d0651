package cluster

// Every node of a pool is a hollow kubelet process (the hollow-kubelet command of
// integration/cmd/local-cluster): the real kubelet of k8s.io/kubernetes over a fake
// container runtime. It registers its Node with the pool's labels and taints, admits
// or rejects the pods bound to it with its own allowlist (a rejected pod is Failed
// with reason SysctlForbidden and a Warning Event from "kubelet"), runs the admitted
// ones, and serves the kubelet API over HTTPS with webhook authentication
// (TokenReview) and authorization (SubjectAccessReview), /configz included.
//
// The kubelets share this machine's address (a kubelet refuses a loopback node IP),
// each on its own port, with a serving certificate from a test kubelet CA
// (KubeletCAFile). Each authenticates as system:node:<name> in group system:nodes,
// authorized by the API server's Node authorizer, as in a real cluster.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/wait"
	certutil "k8s.io/client-go/util/cert"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// kubeletBinary is the command every node runs, found in the binary directory.
const kubeletBinary = "hollow-kubelet"

// kubelet is one node's hollow kubelet process.
type kubelet struct {
	node string
	pool *Pool
	proc *process.Process
	// fixed at the first start, so a restarted kubelet keeps its Node's address
	ip   string
	port int

	mu      sync.Mutex
	allowed []string
}

// kubeletCA signs the kubelets' serving certificates of this test process.
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
		ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "sysctl-placement-test-kubelet-ca"}, key)
		if err != nil {
			kubeletCA.err = err
			return
		}
		kubeletCA.cert, kubeletCA.key = ca, key
		kubeletCA.pem, kubeletCA.err = certutil.EncodeCertificates(ca)
	})
	return kubeletCA.err
}

// KubeletCAFile writes the CA of the kubelets' serving certificates into the work
// directory and returns its path, for serve's --kubelet-ca-file.
func (c *Cluster) KubeletCAFile() (string, error) {
	if err := loadKubeletCA(); err != nil {
		return "", err
	}
	path := filepath.Join(c.WorkDir, "kubelet-ca.crt")
	return path, os.WriteFile(path, kubeletCA.pem, 0o600)
}

// writeServingCert writes a serving certificate for a node's kubelet API, valid for the
// node's name and IP, signed by the kubelet CA.
func writeServingCert(dir, node, ip string) (certFile, keyFile string, err error) {
	return writeSignedCert(dir, "kubelet", &x509.Certificate{
		Subject:     pkix.Name{CommonName: node},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{node}, IPAddresses: []net.IP{net.ParseIP(ip)},
	})
}

// writeKubeletClientCert writes the API server's client certificate for the kubelet
// API (--kubelet-client-certificate), signed by the kubelet CA, which the real nodes'
// kubelets trust for clients (authentication.x509.clientCAFile): `kubectl logs` and
// `exec` on a real node authenticate with it, as a group system:masters user.
func writeKubeletClientCert(dir string) (certFile, keyFile string, err error) {
	return writeSignedCert(dir, "apiserver-kubelet-client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// writeSignedCert completes tmpl (serial, validity, key usage), signs it with the
// kubelet CA and writes <name>.crt and <name>.key into dir.
func writeSignedCert(dir, name string, tmpl *x509.Certificate) (certFile, keyFile string, err error) {
	if err := loadKubeletCA(); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	tmpl.SerialNumber = serial
	// A year: a demo cluster left running must not stop working the next day.
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, kubeletCA.cert, &key.PublicKey, kubeletCA.key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// nodeIP is the address every kubelet reports as its InternalIP: the one a kubelet
// picks by default (the default route's interface), since it refuses loopback.
func nodeIP() (string, error) {
	ip, err := utilnet.ChooseHostInterface()
	if err != nil {
		return "", fmt.Errorf("the hollow kubelets need a non-loopback address of this machine for their nodes, as any kubelet does: %w", err)
	}
	return ip.String(), nil
}

// freePort finds a port that is free on ip, below the kernel's ephemeral range
// (32768 and up on Linux). A port the kernel hands out for ":0" is closed again
// before the kubelet binds it, and in that gap any outgoing connection from this
// address — a discovery probe, the API server calling a kubelet — may take it as its
// source port: seen as "bind: address already in use" in a CI run with several
// clusters at once. Below the ephemeral range only another listener can collide —
// including another kubelet of this process that drew the same port and has not bound
// it yet (seen in CI too: tests start clusters in parallel), so a port is never handed
// out twice by one process.
func freePort(ip string) (int, error) {
	const lowest, highest = 20000, 32767
	handedOut.Lock()
	defer handedOut.Unlock()
	var err error
	for range 100 {
		port := lowest + mathrand.IntN(highest-lowest+1)
		if handedOut.ports[port] {
			continue
		}
		var l net.Listener
		if l, err = net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port))); err == nil {
			l.Close()
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port on %s between %d and %d: %w", ip, lowest, highest, err)
}

// handedOut holds the kubelet ports freePort has given out in this process, and (as
// negative keys) the /24s freeSlash24 has.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// kubeletRoot returns the node's kubelet root directory. It is not in the work
// directory: the kubelet puts unix sockets there, whose paths may not be longer than
// 107 bytes, and a test's temporary directory is named after the test.
func (c *Cluster) kubeletRoot(node string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kubeletRoots == "" {
		dir, err := os.MkdirTemp("", "kubelets-")
		if err != nil {
			return "", err
		}
		c.kubeletRoots = dir
	}
	return filepath.Join(c.kubeletRoots, node), nil
}

// startKubelet provisions the node's identity, directory and serving certificate and
// starts its kubelet.
func (c *Cluster) startKubelet(pool *Pool, node string, allowed []string) (*kubelet, error) {
	ip, err := nodeIP()
	if err != nil {
		return nil, err
	}
	port, err := freePort(ip)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.WorkDir, "kubelets", node)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := c.kubeletRoot(node)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := c.writeKubeconfig("system:node:"+node, "system:nodes")
	if err != nil {
		return nil, err
	}
	certFile, keyFile, err := writeServingCert(dir, node, ip)
	if err != nil {
		return nil, err
	}
	k := &kubelet{node: node, pool: pool, ip: ip, port: port, allowed: allowed}
	labels, taints := registration(pool)
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--node-name=" + node,
		"--node-ip=" + ip,
		"--port=" + strconv.Itoa(port),
		"--root-dir=" + root,
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
		"--node-labels=" + labels,
		"--register-with-taints=" + taints,
		"--kubelet-version=" + pool.Spec.KubeletVersion,
		"--kernel-version=" + pool.Spec.KernelVersion,
	}
	k.proc = &process.Process{Name: "kubelet " + node, Path: filepath.Join(c.BinDir, kubeletBinary),
		Args: args, LogPath: filepath.Join(c.WorkDir, "kubelet-"+node+".log")}
	return k, k.start()
}

// registration returns the --node-labels and --register-with-taints values of a
// pool's nodes: PoolLabel, the pool's labels and its taints.
func registration(pool *Pool) (labels, taints string) {
	list := []string{PoolLabel + "=" + pool.Spec.Name}
	for key, value := range pool.Spec.Labels {
		list = append(list, key+"="+value)
	}
	slices.Sort(list)
	var taintList []string
	for _, t := range pool.Spec.Taints {
		taintList = append(taintList, t.ToString())
	}
	return strings.Join(list, ","), strings.Join(taintList, ",")
}

// start runs the kubelet process with its current allowlist.
func (k *kubelet) start() error {
	k.mu.Lock()
	allowed := k.allowed
	k.mu.Unlock()
	return k.proc.Start("--allowed-unsafe-sysctls=" + strings.Join(allowed, ","))
}

func (k *kubelet) stop() {
	_ = k.proc.Stop(componentGrace)
}

// waitForNodes waits until each node is Ready and schedulable (the node lifecycle
// controller has lifted the not-ready taint), failing early with the log of a kubelet
// that exited. Restarted kubelets are waited for until their Node shows the new boot ID.
func (c *Cluster) waitForNodes(ctx context.Context, kubelets []*kubelet, oldBootIDs map[string]string) error {
	pending := slices.Clone(kubelets)
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		var still []*kubelet
		for _, k := range pending {
			if exited, err := k.proc.Exited(); exited {
				return false, fmt.Errorf("the kubelet of node %s exited: %v\n%s", k.node, err, k.proc.LogTail(15))
			}
			node, err := c.Client.CoreV1().Nodes().Get(ctx, k.node, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				still = append(still, k)
				continue
			}
			if err != nil {
				return false, err
			}
			if !nodeReady(node) || hasTaint(node, corev1.TaintNodeNotReady) ||
				(oldBootIDs != nil && node.Status.NodeInfo.BootID == oldBootIDs[k.node]) {
				still = append(still, k)
			}
		}
		pending = still
		return len(pending) == 0, nil
	})
	if err != nil {
		var names []string
		for _, k := range pending {
			names = append(names, k.node)
		}
		return fmt.Errorf("nodes %s did not become Ready and schedulable (logs in %s): %w", strings.Join(names, ", "), c.WorkDir, err)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	return slices.ContainsFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool {
		return c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
	})
}

func hasTaint(n *corev1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
}

func (c *Cluster) kubeletOf(node string) *kubelet {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.kubelets {
		if k.node == node {
			return k
		}
	}
	return nil
}

// RestartPoolKubelets changes what a pool's kubelets allow and restarts them, as an
// admin does after editing --allowed-unsafe-sysctls, and returns once every node of
// the pool is Ready again with a new boot ID.
func (c *Cluster) RestartPoolKubelets(ctx context.Context, pool string, allowed []string) error {
	c.mu.Lock()
	var kubelets []*kubelet
	for _, k := range c.kubelets {
		if k.pool.Spec.Name == pool {
			kubelets = append(kubelets, k)
		}
	}
	c.mu.Unlock()
	if len(kubelets) == 0 {
		return fmt.Errorf("no pool %q", pool)
	}
	kubelets[0].pool.Spec.AllowedUnsafeSysctls = allowed
	return c.restartKubelets(ctx, kubelets, allowed)
}

// RestartKubelet restarts one node's kubelet allowing allowed, and returns once its
// Node is Ready again with a new boot ID.
func (c *Cluster) RestartKubelet(ctx context.Context, node string, allowed []string) error {
	k := c.kubeletOf(node)
	if k == nil {
		return fmt.Errorf("no node %q", node)
	}
	return c.restartKubelets(ctx, []*kubelet{k}, allowed)
}

func (c *Cluster) restartKubelets(ctx context.Context, kubelets []*kubelet, allowed []string) error {
	bootIDs := map[string]string{}
	for _, k := range kubelets {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, k.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		bootIDs[k.node] = node.Status.NodeInfo.BootID
		k.stop()
		k.mu.Lock()
		k.allowed = allowed
		k.mu.Unlock()
		if err := k.start(); err != nil {
			return err
		}
	}
	return c.waitForNodes(ctx, kubelets, bootIDs)
}

// StopKubelet stops a node's kubelet: its API stops answering and its pods are no
// longer looked after. The Node stays until the node lifecycle controller notices the
// missing heartbeats (--node-monitor-grace-period), as in a real cluster.
func (c *Cluster) StopKubelet(node string) error {
	k := c.kubeletOf(node)
	if k == nil {
		return fmt.Errorf("no node %q", node)
	}
	k.stop()
	return nil
}
