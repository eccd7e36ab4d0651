package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
)

// ConfigzProber reads a kubelet's allowedUnsafeSysctls from its /configz endpoint, the
// way `kubectl get --raw /api/v1/nodes/N/proxy/configz` would, but directly: HTTPS to
// the node's InternalIP and kubelet port. It authenticates with a token of the
// discovery ServiceAccount (ProberConfig.TokenRequest; serve does so) or else with the
// caller's own credentials (`pools` run by an admin). The kubelet authorizes the
// request with a SubjectAccessReview for nodes/configz (get), so no nodes/proxy.
type ConfigzProber struct {
	client *http.Client
}

// ProberConfig configures NewConfigzProber.
type ProberConfig struct {
	// Rest supplies the credentials, of any kind a rest.Config carries (token, token
	// file, client certificate, exec plugin, auth provider), unless TokenRequest is
	// set. Its API server CA is the default kubelet CA.
	Rest *rest.Config
	// TokenRequest, when set, makes the prober send tokens of that ServiceAccount and
	// none of Rest's credentials: the address a kubelet is read at comes from its own
	// Node, so a compromised node gets whatever is sent.
	TokenRequest *TokenRequestConfig
	// CAFile verifies the kubelets' serving certificates. Empty: the cluster CA of Rest
	// (right for kubelets with serverTLSBootstrap, whose certificates the cluster signs).
	CAFile string
	// Insecure skips verification, for kubelets with self-signed serving certificates
	// (the kubelet default). The token is still sent, so use it only on trusted node
	// networks.
	Insecure bool
	// Timeout bounds one probe. Default 5s.
	Timeout time.Duration
}

// NewConfigzProber builds a prober.
func NewConfigzProber(cfg ProberConfig) (*ConfigzProber, error) {
	if cfg.Rest == nil {
		return nil, fmt.Errorf("configz prober: a rest config with credentials is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	// The kubelet gets the same credentials as the API server, whatever their kind:
	// rest.TransportFor applies a bearer token or token file (re-read as it rotates), a
	// client certificate, an exec credential plugin (cloud logins) or an auth
	// provider. Only the server side differs: the kubelet's own CA and address.
	rc := rest.CopyConfig(cfg.Rest)
	if cfg.TokenRequest != nil {
		// Only the server side of Rest (its CA): none of its credentials.
		wrap, err := tokenRequestTransport(*cfg.TokenRequest)
		if err != nil {
			return nil, fmt.Errorf("configz prober: %w", err)
		}
		rc = rest.AnonymousClientConfig(cfg.Rest)
		rc.WrapTransport = wrap
	}
	rc.ServerName = ""
	// HTTP/1.1, so that Probe's one connection per read holds: an HTTP/2 connection
	// outlives the request (about 60 kB each, one per node read in the last 90 s:
	// 30 MiB at 20 reads/s).
	rc.NextProtos = []string{"http/1.1"}
	switch {
	case cfg.Insecure:
		rc.Insecure, rc.CAFile, rc.CAData = true, "", nil
	case cfg.CAFile != "":
		rc.CAFile, rc.CAData = cfg.CAFile, nil
	}
	rt, err := rest.TransportFor(rc)
	if err != nil {
		return nil, fmt.Errorf("could not build the kubelet client (check --kubelet-ca-file and the kubeconfig's credentials): %w", err)
	}
	return &ConfigzProber{client: &http.Client{Transport: rt, Timeout: cfg.Timeout}}, nil
}

// configz is the part of the kubelet's /configz answer discovery reads.
type configz struct {
	KubeletConfig *struct {
		AllowedUnsafeSysctls []string `json:"allowedUnsafeSysctls"`
	} `json:"kubeletconfig"`
}

// Probe reads the node's kubelet allowlist.
func (p *ConfigzProber) Probe(ctx context.Context, node *corev1.Node) ([]string, error) {
	ip, port := internalIP(node), node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if ip == "" || port == 0 {
		return nil, fmt.Errorf("the node reports no InternalIP or kubelet port (status.daemonEndpoints)")
	}
	url := "https://" + net.JoinHostPort(ip, strconv.Itoa(int(port))) + "/configz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	// One connection per read: a kubelet is read again minutes later, long after an
	// idle connection would have timed out, so keeping thousands of them open (one per
	// node read in the last 90 s) would only cost memory on both sides.
	req.Close = true
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("could not reach the kubelet at %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }() // read to its limit already: nothing is lost
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, fmt.Errorf("the kubelet at %s refused our token (401): check the discovery ServiceAccount's token (its audience must be one the kubelet's TokenReview accepts)", url)
	case resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("the kubelet at %s forbids /configz (403): grant get on nodes/configz to the discovery ServiceAccount (deploy/base/discovery-rbac.yaml)", url)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the kubelet at %s answered %s", url, resp.Status)
	}
	var cz configz
	if err := json.Unmarshal(body, &cz); err != nil {
		return nil, fmt.Errorf("the kubelet at %s sent no configz JSON: %w", url, err)
	}
	if cz.KubeletConfig == nil {
		return nil, fmt.Errorf("the kubelet at %s sent configz without kubeletconfig", url)
	}
	return cz.KubeletConfig.AllowedUnsafeSysctls, nil
}
