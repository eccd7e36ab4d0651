package cluster

// Pods on a real node reach the API server the way a cluster's pods do: at the
// kubernetes Service's ClusterIP, port 443, with their ServiceAccount's token, checking
// the API server's certificate against kube-root-ca.crt. There is no kube-proxy, so
// the harness plays its part for that one Service: the ClusterIP is an address of this
// machine (on loopback) and a LoadBalancer on it forwards to the API server. Pods get
// a route to the Services' range (and to the nodes' address, for the kubelet API), and
// nothing else. The other direction needs no help: the API server dials a webhook
// Service's ready endpoint itself (--enable-aggregator-routing), and this machine has
// a route to every real node's pods through the node's bridge.

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// serviceRangeOctet is the second octet of the /16 whose /24s are the clusters'
// Service ranges (the real nodes' pod ranges are in 10.253.0.0/16).
const serviceRangeOctet = 252

// serveForPods gives the API server a Service range of this cluster's own and a
// serving certificate, signed by the test CA, that is valid for the kubernetes
// Service's names and ClusterIP as well as for loopback, and a ServiceAccount token
// signing key.
func (c *Cluster) serveForPods(apiServer *envtest.APIServer) error {
	cidr, release, err := freeSlash24(serviceRangeOctet)
	if err != nil {
		return err
	}
	c.releaseServiceRange = release
	_, ipnet, _ := net.ParseCIDR(cidr)
	first := ipnet.IP.To4()
	first[3] = 1
	c.serviceCIDR, c.serviceIP = cidr, first.String()
	apiServer.Configure().Set("service-cluster-ip-range", cidr)

	// envtest makes a serving certificate for loopback only, unless one is there.
	apiServer.CertDir = filepath.Join(c.WorkDir, "apiserver")
	if err := os.MkdirAll(apiServer.CertDir, 0o700); err != nil {
		return err
	}
	if _, _, err := writeSignedCert(apiServer.CertDir, "apiserver", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(c.serviceIP)},
	}); err != nil {
		return err
	}
	// With a serving certificate there, envtest makes none of its files, so the
	// ServiceAccount token signing key (and the certificate of its public half) too.
	if _, _, err := writeSignedCert(apiServer.CertDir, "sa-signer", &x509.Certificate{
		Subject: pkix.Name{CommonName: "service-account-signer"},
	}); err != nil {
		return err
	}
	apiServer.SecureServing.CA = kubeletCA.pem
	return nil
}

// startServiceProxy puts the kubernetes Service's ClusterIP on loopback and forwards
// its port 443 to the API server. It runs once per cluster, under c.mu (which it does
// not take), so that Stop cannot miss the proxy.
func (c *Cluster) startServiceProxy() (*LoadBalancer, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command("ip", "addr", "add", c.serviceIP+"/32", "dev", "lo").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("could not put the kubernetes Service's address %s on loopback: %v: %s", c.serviceIP, err, out)
	}
	lb, err := StartLoadBalancer(LoadBalancerOptions{Listen: net.JoinHostPort(c.serviceIP, "443")}, Backend{Addr: u.Host})
	if err != nil {
		_ = exec.Command("ip", "addr", "del", c.serviceIP+"/32", "dev", "lo").Run()
		return nil, err
	}
	return lb, nil
}

// stopServiceProxy undoes startServiceProxy.
func (c *Cluster) stopServiceProxy(lb *LoadBalancer) error {
	err := lb.Close()
	if out, delErr := exec.Command("ip", "addr", "del", c.serviceIP+"/32", "dev", "lo").CombinedOutput(); delErr != nil {
		return fmt.Errorf("could not remove %s from loopback: %v: %s", c.serviceIP, delErr, out)
	}
	return err
}
