// Package delegatedauth lets the Kubernetes API server decide who may read an
// operational endpoint (/metrics, /debug/pprof): the caller's bearer token is checked
// with a TokenReview and its right to the path with a SubjectAccessReview on the
// non-resource URL, as kube-apiserver's delegating authenticator and authorizer and
// controller-runtime's metrics filter do. RBAC then says who may scrape
// (`nonResourceURLs: ["/metrics"], verbs: ["get"]`), with no secret of our own.
//
// This is never on the admission path: only the metrics server uses it, and decisions
// are cached so a scrape every few seconds costs the API server a review a minute.
//
// Anyone who reaches the port can send tokens, so what they cost is bounded: tokens
// the API server accepted and tokens it refused are cached apart (a flood of made-up
// tokens cannot evict a scraper's), and tokens in neither cache are reviewed at most
// unknownTokenReviews a second (beyond, 429) — a token once accepted is reviewed again
// whatever the flood.
package delegatedauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
)

// Cache lifetimes, those of kube-apiserver's delegating authentication and
// authorization (--authentication-token-webhook-cache-ttl and
// --authorization-webhook-cache-{authorized,unauthorized}-ttl): a revoked token or
// binding stops working within these times.
const (
	authenticatedTTL   = 2 * time.Minute
	unauthenticatedTTL = 10 * time.Second
	allowedTTL         = 5 * time.Minute
	deniedTTL          = 30 * time.Second
	// cacheSize bounds memory whatever callers send; scrapers are a handful.
	cacheSize = 1024
	// acceptedTokenMemory is how long a token the API server accepted skips the
	// limit on reviews of unknown tokens, when its authenticatedTTL has passed: a
	// scraper's token is re-reviewed every authenticatedTTL even during a flood,
	// and a projected ServiceAccount token lives an hour by default.
	acceptedTokenMemory = time.Hour
	// unknownTokenReviews and unknownTokenBurst bound the TokenReviews of tokens
	// in neither cache: a few scrapers (re)starting at once pass, a flood of
	// made-up tokens costs the API server at most this rate.
	unknownTokenReviews = 2
	unknownTokenBurst   = 16
	// reviewTimeout bounds one review: a slow API server must not hold a scrape
	// connection open longer than Prometheus' own scrape timeout.
	reviewTimeout = 10 * time.Second
)

// Config configures a Filter.
type Config struct {
	// TokenReviews checks bearer tokens (required).
	TokenReviews authenticationclient.TokenReviewInterface
	// SubjectAccessReviews checks a user's right to a path (required).
	SubjectAccessReviews authorizationclient.SubjectAccessReviewInterface
	// Audiences, when set, are sent with every TokenReview: the API server accepts
	// only tokens issued for one of them, and the filter checks that it said so.
	// Empty: the API server's own audiences.
	Audiences []string
	// Logger receives refused requests at debug level and review errors as
	// warnings. Optional.
	Logger logrus.FieldLogger

	// clock is the cache's and the rate limit's clock, fake in tests.
	clock clock.Clock
}

func (c *Config) defaults() error {
	if c.TokenReviews == nil || c.SubjectAccessReviews == nil {
		return errors.New("delegated authentication needs TokenReview and SubjectAccessReview clients")
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	return nil
}

// Filter admits a request only when the API server authenticates its bearer token and
// authorizes the user for the request's non-resource path and verb.
type Filter struct {
	cfg Config
	// accepted holds the tokens the API server authenticated, rejected those it did
	// not: apart, so that made-up tokens evict only each other.
	accepted *cache.LRUExpireCache
	rejected *cache.LRUExpireCache
	// unknown limits the TokenReviews of tokens in neither cache.
	unknown *rate.Limiter
	grant   *cache.LRUExpireCache
}

// NewFilter returns a Filter; see Config for what is required.
func NewFilter(cfg Config) (*Filter, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	return &Filter{
		cfg:      cfg,
		accepted: cache.NewLRUExpireCacheWithClock(cacheSize, cfg.clock),
		rejected: cache.NewLRUExpireCacheWithClock(cacheSize, cfg.clock),
		unknown:  rate.NewLimiter(unknownTokenReviews, unknownTokenBurst),
		grant:    cache.NewLRUExpireCacheWithClock(cacheSize, cfg.clock),
	}, nil
}

// acceptedToken is what a TokenReview said about a token the API server accepted.
type acceptedToken struct {
	info authenticationv1.UserInfo
	// until is when the answer expires (authenticatedTTL); the entry itself stays
	// for acceptedTokenMemory, so that the token's next review skips the limit.
	until time.Time
}

// errTooManyUnknownTokens is the answer to a token in neither cache beyond the
// limit on their reviews.
var errTooManyUnknownTokens = errors.New("too many unknown tokens")

// Wrap returns next guarded by the filter: 401 without a valid bearer token, 403 when
// the user may not use the path, 429 when too many unknown tokens arrive at once, 500
// when the API server cannot be asked.
func (f *Filter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sysctl-placement metrics"`)
			http.Error(w, "send a Kubernetes bearer token (Authorization: Bearer <token>) of an identity allowed to get this path", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), reviewTimeout)
		defer cancel()
		info, err := f.authenticate(ctx, token)
		if errors.Is(err, errTooManyUnknownTokens) {
			f.cfg.Logger.WithField("path", r.URL.Path).Debug("refused a metrics request: too many unknown tokens to review")
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many unknown bearer tokens to check with the API server; retry", http.StatusTooManyRequests)
			return
		}
		if err != nil {
			f.cfg.Logger.WithError(err).Warn("could not review a metrics caller's token")
			http.Error(w, "could not check the token with the API server", http.StatusInternalServerError)
			return
		}
		if info == nil {
			f.cfg.Logger.WithField("path", r.URL.Path).Debug("refused a metrics request: the token is not valid")
			http.Error(w, "the bearer token was not accepted by the API server", http.StatusUnauthorized)
			return
		}
		verb := strings.ToLower(r.Method)
		allowed, reason, err := f.authorize(ctx, info, r.URL.Path, verb)
		if err != nil {
			f.cfg.Logger.WithError(err).Warn("could not review a metrics caller's access")
			http.Error(w, "could not check access with the API server", http.StatusInternalServerError)
			return
		}
		if !allowed {
			f.cfg.Logger.WithFields(logrus.Fields{"user": info.Username, "path": r.URL.Path, "verb": verb}).Debug("refused a metrics request: not authorized")
			msg := fmt.Sprintf("user %q may not %s %s: grant it with a ClusterRole rule nonResourceURLs: [%q], verbs: [%q]", info.Username, verb, r.URL.Path, r.URL.Path, verb)
			if reason != "" {
				msg += " (" + reason + ")"
			}
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// authenticate returns the token's user, or nil when the token is not valid, or
// errTooManyUnknownTokens.
func (f *Filter) authenticate(ctx context.Context, token string) (*authenticationv1.UserInfo, error) {
	// The cache key is a hash: the cache must not keep tokens in memory.
	key := sha256.Sum256([]byte(token))
	v, known := f.accepted.Get(key)
	if known && f.cfg.clock.Now().Before(v.(acceptedToken).until) {
		info := v.(acceptedToken).info
		return &info, nil
	}
	if !known {
		if _, ok := f.rejected.Get(key); ok {
			return nil, nil
		}
		if !f.unknown.AllowN(f.cfg.clock.Now(), 1) {
			return nil, errTooManyUnknownTokens
		}
	}
	review, err := f.cfg.TokenReviews.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: f.cfg.Audiences}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("TokenReview: %w", err)
	}
	if !review.Status.Authenticated || !f.forOurAudience(review.Status.Audiences) {
		f.accepted.Remove(key)
		f.rejected.Add(key, struct{}{}, unauthenticatedTTL)
		return nil, nil
	}
	info := review.Status.User
	f.accepted.Add(key, acceptedToken{info: info, until: f.cfg.clock.Now().Add(authenticatedTTL)}, acceptedTokenMemory)
	return &info, nil
}

// forOurAudience reports whether a token the API server authenticated for audiences
// is one for Config.Audiences, as kube-apiserver's delegating authenticator checks:
// an API server that ignores spec.audiences must not make any token good.
func (f *Filter) forOurAudience(audiences []string) bool {
	if len(f.cfg.Audiences) == 0 {
		return true
	}
	return slices.ContainsFunc(f.cfg.Audiences, func(a string) bool { return slices.Contains(audiences, a) })
}

type grantKey struct{ user, path, verb string }

type decision struct {
	allowed bool
	reason  string
}

// authorize asks whether info may use verb on the non-resource path.
func (f *Filter) authorize(ctx context.Context, info *authenticationv1.UserInfo, path, verb string) (bool, string, error) {
	// The user's name, uid and groups decide; extra rarely does, but is sent.
	key := grantKey{user: info.Username + "\x00" + info.UID + "\x00" + strings.Join(info.Groups, "\x00"), path: path, verb: verb}
	if v, ok := f.grant.Get(key); ok {
		d := v.(decision)
		return d.allowed, d.reason, nil
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range info.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	review, err := f.cfg.SubjectAccessReviews.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:                  info.Username,
		UID:                   info.UID,
		Groups:                info.Groups,
		Extra:                 extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("SubjectAccessReview: %w", err)
	}
	d := decision{allowed: review.Status.Allowed && !review.Status.Denied, reason: review.Status.Reason}
	ttl := deniedTTL
	if d.allowed {
		ttl = allowedTTL
	}
	f.grant.Add(key, d, ttl)
	return d.allowed, d.reason, nil
}

// NewFilterForConfig is NewFilter with review clients for the API server of config;
// audience, when not empty, is the one audience tokens must be issued for.
func NewFilterForConfig(config *rest.Config, audience string, logger logrus.FieldLogger) (*Filter, error) {
	authn, err := authenticationclient.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("could not build a TokenReview client: %w", err)
	}
	authz, err := authorizationclient.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("could not build a SubjectAccessReview client: %w", err)
	}
	cfg := Config{TokenReviews: authn.TokenReviews(), SubjectAccessReviews: authz.SubjectAccessReviews(), Logger: logger}
	if audience != "" {
		cfg.Audiences = []string{audience}
	}
	return NewFilter(cfg)
}
