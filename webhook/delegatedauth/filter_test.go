package delegatedauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// apiServer answers TokenReviews and SubjectAccessReviews like a real one would with
// the given tokens and grants, and counts the reviews.
type apiServer struct {
	tokens  map[string]string          // token → user
	grants  map[string]map[string]bool // user → "verb path" allowed
	reviews int
}

func (a *apiServer) filter(t *testing.T) *Filter {
	t.Helper()
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		a.reviews++
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		if name, ok := a.tokens[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: name, Groups: []string{"system:authenticated"}}}
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
	f, err := NewFilter(Config{TokenReviews: client.AuthenticationV1().TokenReviews(), SubjectAccessReviews: client.AuthorizationV1().SubjectAccessReviews()})
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

func TestNewFilter(t *testing.T) {
	t.Run("a filter without review clients is refused", func(t *testing.T) {
		if _, err := NewFilter(Config{}); err == nil || !strings.Contains(err.Error(), "TokenReview") {
			t.Errorf("NewFilter without clients: %v, want an error naming what is missing", err)
		}
	})
}
