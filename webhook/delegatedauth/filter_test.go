package delegatedauth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

// apiServer answers TokenReviews and SubjectAccessReviews like a real one would with
// the given tokens and grants, and counts the reviews.
type apiServer struct {
	tokens map[string]string          // token → user
	grants map[string]map[string]bool // user → "verb path" allowed
	// audiences says which audience a token was issued for (default: the API
	// server's, apiAudience); ignoreAudiences plays an API server that does not
	// check spec.audiences.
	audiences       map[string]string
	ignoreAudiences bool
	reviews         int
	tokenReviews    int
}

// apiAudience is the API server's own audience, that of tokens issued without one.
const apiAudience = "https://kubernetes.default.svc"

func (a *apiServer) filter(t *testing.T) *Filter {
	t.Helper()
	return a.filterWith(t, Config{})
}

// filterWith is a Filter of cfg (Audiences, clock) on this API server's clients.
func (a *apiServer) filterWith(t *testing.T, cfg Config) *Filter {
	t.Helper()
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		a.reviews++
		a.tokenReviews++
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		name, ok := a.tokens[tr.Spec.Token]
		if !ok {
			return true, tr, nil
		}
		audience := a.audiences[tr.Spec.Token]
		if audience == "" {
			audience = apiAudience
		}
		wanted := tr.Spec.Audiences
		if len(wanted) == 0 || a.ignoreAudiences {
			wanted = []string{apiAudience}
		}
		if slices.Contains(wanted, audience) {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{audience}, User: authenticationv1.UserInfo{Username: name, Groups: []string{"system:authenticated"}}}
		}
		return true, tr, nil
	})
	client.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		a.reviews++
		sar := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		attrs := sar.Spec.NonResourceAttributes
		if attrs == nil {
			t.Errorf("a SubjectAccessReview without nonResourceAttributes: %+v", sar.Spec)
			return true, sar, nil
		}
		sar.Status.Allowed = a.grants[sar.Spec.User][attrs.Verb+" "+attrs.Path]
		return true, sar, nil
	})
	cfg.TokenReviews, cfg.SubjectAccessReviews = client.AuthenticationV1().TokenReviews(), client.AuthorizationV1().SubjectAccessReviews()
	f, err := NewFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Only callers the API server authenticates and authorizes read what the filter guards.
func TestFilter(t *testing.T) {
	api := &apiServer{
		tokens: map[string]string{"prometheus-token": "system:serviceaccount:monitoring:prometheus", "other-token": "system:serviceaccount:default:default"},
		grants: map[string]map[string]bool{"system:serviceaccount:monitoring:prometheus": {"get /metrics": true}},
	}
	handler := api.filter(t).Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
	get := func(path, authorization string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}
	for _, tc := range []struct {
		name, path, authorization string
		code                      int
		body                      string
	}{
		{"a request without a token is refused with 401 and told what to send", "/metrics", "", http.StatusUnauthorized, "bearer token"},
		{"a request with another scheme is refused with 401", "/metrics", "Basic dXNlcjpwYXNz", http.StatusUnauthorized, "bearer token"},
		{"a token the API server does not accept is refused with 401", "/metrics", "Bearer forged", http.StatusUnauthorized, "not accepted"},
		{"an authenticated user without the grant is refused with 403 naming the RBAC rule", "/metrics", "Bearer other-token", http.StatusForbidden, `nonResourceURLs: ["/metrics"], verbs: ["get"]`},
		{"the granted user reads /metrics", "/metrics", "Bearer prometheus-token", http.StatusOK, "metrics"},
		{"the grant for /metrics does not extend to pprof", "/debug/pprof/heap", "Bearer prometheus-token", http.StatusForbidden, "/debug/pprof/heap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(tc.path, tc.authorization)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
			}
		})
	}
	t.Run("repeated scrapes are answered from the cache, not with new reviews", func(t *testing.T) {
		before := api.reviews
		for range 10 {
			if rec := get("/metrics", "Bearer prometheus-token"); rec.Code != http.StatusOK {
				t.Fatalf("GET /metrics = %d", rec.Code)
			}
		}
		if api.reviews != before {
			t.Errorf("10 scrapes made %d reviews, want 0 (cached)", api.reviews-before)
		}
	})
}

// get sends a GET of path with the bearer token through handler.
func get(handler http.Handler, path, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec
}

var scraperAPI = &apiServer{
	tokens: map[string]string{"prometheus-token": "system:serviceaccount:monitoring:prometheus"},
	grants: map[string]map[string]bool{"system:serviceaccount:monitoring:prometheus": {"get /metrics": true}},
}

func metricsHandler(f *Filter) http.Handler {
	return f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("metrics")) }))
}

func TestTokenFlood(t *testing.T) {
	// Anyone who reaches the port can send made-up tokens; each new one used to cost a
	// TokenReview and push the real scraper out of the one cache.
	t.Run("a flood of made-up tokens costs bounded reviews and keeps the scraper", func(t *testing.T) {
		api := *scraperAPI
		clk := clocktesting.NewFakeClock(time.Now())
		handler := metricsHandler(api.filterWith(t, Config{clock: clk}))
		if rec := get(handler, "/metrics", "prometheus-token"); rec.Code != http.StatusOK {
			t.Fatalf("the scraper's first scrape = %d %q", rec.Code, rec.Body.String())
		}
		flood := func() (refused map[int]int) {
			refused = map[int]int{}
			for i := range 2 * cacheSize {
				refused[get(handler, "/metrics", fmt.Sprintf("made-up-%d-%d", clk.Now().UnixNano(), i)).Code]++
			}
			return refused
		}

		before := api.tokenReviews
		refused := flood()
		t.Run("made-up tokens cost at most the burst of TokenReviews", func(t *testing.T) {
			if n := api.tokenReviews - before; n > unknownTokenBurst {
				t.Errorf("%d made-up tokens made %d TokenReviews, want at most %d", 2*cacheSize, n, unknownTokenBurst)
			}
		})
		t.Run("the made-up tokens beyond it are answered 429, the others 401", func(t *testing.T) {
			if refused[http.StatusTooManyRequests]+refused[http.StatusUnauthorized] != 2*cacheSize || refused[http.StatusTooManyRequests] == 0 {
				t.Errorf("answers to made-up tokens by status: %v, want only 401 and 429", refused)
			}
		})
		t.Run("the scraper is still answered from the cache", func(t *testing.T) {
			before := api.reviews
			if rec := get(handler, "/metrics", "prometheus-token"); rec.Code != http.StatusOK {
				t.Errorf("the scraper after the flood = %d %q, want 200", rec.Code, rec.Body.String())
			}
			if api.reviews != before {
				t.Errorf("the scraper's token after the flood made %d reviews, want 0: it was pushed out of the cache", api.reviews-before)
			}
		})
		t.Run("once its answer expires, the scraper's token is reviewed again whatever the flood", func(t *testing.T) {
			clk.Step(authenticatedTTL + time.Second)
			flood()
			before := api.tokenReviews
			if rec := get(handler, "/metrics", "prometheus-token"); rec.Code != http.StatusOK {
				t.Errorf("the scraper during a flood after its answer expired = %d %q, want 200", rec.Code, rec.Body.String())
			}
			if n := api.tokenReviews - before; n != 1 {
				t.Errorf("the scraper's expired answer made %d TokenReviews, want 1", n)
			}
		})
	})
}

func TestTokenReviewsCarryTheAudience(t *testing.T) {
	const audience = "sysctl-placement"
	api := &apiServer{
		tokens:    map[string]string{"api-token": "system:serviceaccount:monitoring:prometheus", "scoped-token": "system:serviceaccount:monitoring:prometheus"},
		grants:    scraperAPI.grants,
		audiences: map[string]string{"scoped-token": audience},
	}
	handler := metricsHandler(api.filterWith(t, Config{Audiences: []string{audience}}))
	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"a token issued for the API server is refused", "api-token", http.StatusUnauthorized},
		{"a token issued for the audience is accepted", "scoped-token", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if rec := get(handler, "/metrics", tc.token); rec.Code != tc.code {
				t.Errorf("GET /metrics with %s = %d %q, want %d", tc.token, rec.Code, rec.Body.String(), tc.code)
			}
		})
	}
	t.Run("an API server that ignores the audience does not make any token good", func(t *testing.T) {
		api.ignoreAudiences = true
		handler := metricsHandler(api.filterWith(t, Config{Audiences: []string{audience}}))
		if rec := get(handler, "/metrics", "api-token"); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET /metrics with a token for the API server = %d, want 401", rec.Code)
		}
	})
}

func TestNewFilter(t *testing.T) {
	t.Run("a filter without review clients is refused", func(t *testing.T) {
		if _, err := NewFilter(Config{}); err == nil || !strings.Contains(err.Error(), "TokenReview") {
			t.Errorf("NewFilter without clients: %v, want an error naming what is missing", err)
		}
	})
}
