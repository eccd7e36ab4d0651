package discovery

// This file gives the configz prober a credential of its own. The prober sends it to
// whatever address and port a Node reports, so a compromised node receives it: it must
// be worth nothing but reading kubelet configuration. serve's own token lists every pod
// and writes the shared discovery result; this one is a ServiceAccount's that may only
// get nodes/configz, short-lived, and requested afresh with the TokenRequest API.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/transport"
)

// DefaultServiceAccount is the ServiceAccount, in the webhook's namespace, whose tokens
// discovery sends to kubelets (deploy/base/discovery-rbac.yaml: get nodes/configz and
// nothing else).
const DefaultServiceAccount = "sysctl-placement-discovery"

// TokenRequestConfig says whose tokens the prober sends to kubelets.
type TokenRequestConfig struct {
	// Client requests the tokens (RBAC: create serviceaccounts/token on that one name).
	Client kubernetes.Interface
	// Namespace and ServiceAccount name the account (required).
	Namespace, ServiceAccount string
	// Expiration is each token's lifetime. Default and least: 10 minutes, the shortest
	// the TokenRequest API issues. A token is replaced at 80% of its lifetime, as the
	// kubelet replaces projected tokens.
	Expiration time.Duration
}

// minTokenExpiration is the shortest lifetime the TokenRequest API accepts.
const minTokenExpiration = 10 * time.Minute

func (c *TokenRequestConfig) defaults() error {
	switch {
	case c.Client == nil:
		return errors.New("a Kubernetes client is required to request kubelet tokens")
	case c.Namespace == "" || c.ServiceAccount == "":
		return errors.New("the namespace and name of the discovery ServiceAccount are required")
	}
	if c.Expiration < minTokenExpiration {
		c.Expiration = minTokenExpiration
	}
	return nil
}

// tokenRequestSource requests a token for the ServiceAccount each time it is asked;
// transport.NewCachedTokenSource around it asks once per token lifetime.
//
// No audience is requested: the token then carries the API server's own audiences,
// which is what a kubelet's webhook authentication checks (its TokenReview names no
// audience unless the kubelet is configured with one). A custom audience would bind
// the token more tightly, but every kubelet would refuse it with 401. What keeps the
// token harmless is its account's RBAC (get nodes/configz only) and its 10 minutes.
type tokenRequestSource struct {
	cfg TokenRequestConfig
}

// Token implements oauth2.TokenSource.
func (s *tokenRequestSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seconds := int64(s.cfg.Expiration / time.Second)
	tr, err := s.cfg.Client.CoreV1().ServiceAccounts(s.cfg.Namespace).CreateToken(ctx, s.cfg.ServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
	switch {
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("could not request a token for ServiceAccount %s/%s to read kubelets (grant create on serviceaccounts/token with resourceNames [%s], deploy/base/discovery-rbac.yaml): %w",
			s.cfg.Namespace, s.cfg.ServiceAccount, s.cfg.ServiceAccount, err)
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("could not request a token to read kubelets: ServiceAccount %s/%s does not exist (deploy/base/discovery-rbac.yaml creates it): %w",
			s.cfg.Namespace, s.cfg.ServiceAccount, err)
	case err != nil:
		return nil, fmt.Errorf("could not request a token for ServiceAccount %s/%s to read kubelets: %w", s.cfg.Namespace, s.cfg.ServiceAccount, err)
	}
	issued, expires := time.Now(), tr.Status.ExpirationTimestamp.Time
	return &oauth2.Token{AccessToken: tr.Status.Token, TokenType: "Bearer", Expiry: issued.Add(expires.Sub(issued) * 8 / 10)}, nil
}

// tokenRequestTransport wraps a kubelet transport so that every request carries a
// token of the configured ServiceAccount, cached until 80% of its lifetime and
// requested again after a kubelet answers 401.
func tokenRequestTransport(cfg TokenRequestConfig) (transport.WrapperFunc, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return transport.ResettableTokenSourceWrapTransport(transport.NewCachedTokenSource(&tokenRequestSource{cfg: cfg})), nil
}
