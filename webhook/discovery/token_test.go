package discovery

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

// tokenIssuer answers TokenRequests of a fake clientset with numbered tokens and keeps
// each request.
type tokenIssuer struct {
	mu       sync.Mutex
	requests []*authenticationv1.TokenRequest
	names    []string
}

func (ti *tokenIssuer) install(client *fake.Clientset) {
	client.PrependReactor("create", "serviceaccounts", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "token" {
			return false, nil, nil
		}
		create := action.(k8stesting.CreateActionImpl)
		tr := create.GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		ti.mu.Lock()
		defer ti.mu.Unlock()
		ti.requests = append(ti.requests, tr)
		ti.names = append(ti.names, action.GetNamespace()+"/"+create.Name)
		tr.Status = authenticationv1.TokenRequestStatus{
			Token:               "discovery-token-" + strconv.Itoa(len(ti.requests)),
			ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Duration(*tr.Spec.ExpirationSeconds) * time.Second)),
		}
		return true, tr, nil
	})
}

func TestDiscoveryToken(t *testing.T) {
	t.Run("kubelets get the discovery service accounts token", func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		kubelet := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Authorization"))
			mu.Unlock()
			_, _ = w.Write([]byte(`{"kubeletconfig": {"allowedUnsafeSysctls": ["kernel.sem"]}}`))
		}))
		defer kubelet.Close()
		k := &fakeKubelet{srv: kubelet}
		client := fake.NewClientset()
		issuer := &tokenIssuer{}
		issuer.install(client)
		prober, err := NewConfigzProber(ProberConfig{
			Rest:         &rest.Config{BearerToken: "serve-own-token", Username: "u", Password: "p"},
			CAFile:       k.caFile(t),
			TokenRequest: &TokenRequestConfig{Client: client, Namespace: "sysctl-placement", ServiceAccount: DefaultServiceAccount},
		})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			allowed, err := prober.Probe(t.Context(), node("ipc-1", "ipc", servedBy(k)))
			if err != nil || !slices.Equal(allowed, []string{"kernel.sem"}) {
				t.Fatalf("Probe = %v, %v; want [kernel.sem]", allowed, err)
			}
		}

		t.Run("every read carries the discovery token and never the process's own credentials", func(t *testing.T) {
			mu.Lock()
			defer mu.Unlock()
			for _, auth := range seen {
				if auth != "Bearer discovery-token-1" {
					t.Errorf("a kubelet got Authorization %q; want Bearer discovery-token-1", auth)
				}
			}
		})

		t.Run("one token of ten minutes with the API server's own audiences serves many reads", func(t *testing.T) {
			issuer.mu.Lock()
			defer issuer.mu.Unlock()
			if len(issuer.requests) != 1 || issuer.names[0] != "sysctl-placement/"+DefaultServiceAccount {
				t.Fatalf("token requests = %v; want one, for sysctl-placement/%s", issuer.names, DefaultServiceAccount)
			}
			spec := issuer.requests[0].Spec
			if *spec.ExpirationSeconds != 600 || len(spec.Audiences) != 0 {
				t.Errorf("token request = %+v; want 600 seconds and no audience (a kubelet's TokenReview checks the API server's own)", spec)
			}
		})
	})
}
