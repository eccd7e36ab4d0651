package perf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestKubeletFarm(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: tr.Spec.Token == "good", User: authenticationv1.UserInfo{Username: "system:serviceaccount:sysctl-placement:sysctl-placement"}}
		return true, tr, nil
	})
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		sar.Status.Allowed = true
		return true, sar, nil
	})
	// More nodes than one /24 holds, so that the addresses cross a block.
	const nodes = 300
	names := make([]string, nodes)
	for i := range names {
		names[i] = "node-" + strconv.Itoa(i)
	}
	farm, err := StartKubeletFarm(client, t.TempDir(), names, func(i int) []string { return []string{"net.core.somaxconn", strconv.Itoa(i)} })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(farm.Close)
	caPEM, err := os.ReadFile(farm.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", farm.CAFile)
	}
	// Verified like serve's prober: the farm's CA, the node's address as the host.
	kubeletClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	configz := func(t *testing.T, i int, token string) (int, []string) {
		t.Helper()
		ip, port := farm.Address(i)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+net.JoinHostPort(ip, strconv.Itoa(int(port)))+"/configz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Close = true
		resp, err := kubeletClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			KubeletConfig struct {
				AllowedUnsafeSysctls []string `json:"allowedUnsafeSysctls"`
			} `json:"kubeletconfig"`
		}
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, body.KubeletConfig.AllowedUnsafeSysctls
	}

	t.Run("every node has its own loopback address and all share one port", func(t *testing.T) {
		seen := map[string]bool{}
		_, port0 := farm.Address(0)
		for i := range nodes {
			ip, port := farm.Address(i)
			a := net.ParseIP(ip)
			if a == nil || !a.IsLoopback() || a.To4()[3] == 0 || a.To4()[3] == 255 {
				t.Errorf("node %d is at %s; want a loopback address not ending in .0 or .255", i, ip)
			}
			if seen[ip] {
				t.Errorf("node %d shares the address %s", i, ip)
			}
			seen[ip] = true
			if port != port0 {
				t.Errorf("node %d has port %d; want the shared %d", i, port, port0)
			}
			if st := farm.FarmNodeStatus(i, "v1.37.2", "6.8.0"); st.Addresses[0].Address != ip || st.DaemonEndpoints.KubeletEndpoint.Port != port {
				t.Errorf("node %d's status reports %s:%d; want %s:%d", i, st.Addresses[0].Address, st.DaemonEndpoints.KubeletEndpoint.Port, ip, port)
			}
		}
	})
	t.Run("each node answers with its own allowlist over verified TLS", func(t *testing.T) {
		for _, i := range []int{0, 253, 254, nodes - 1} {
			code, allowed := configz(t, i, "good")
			if want := []string{"net.core.somaxconn", strconv.Itoa(i)}; code != http.StatusOK || !slices.Equal(allowed, want) {
				t.Errorf("node %d answered %d %v; want 200 %v", i, code, allowed, want)
			}
		}
	})
	t.Run("a node checks the caller once and then caches it", func(t *testing.T) {
		before := farm.Counts()
		for range 3 {
			if code, _ := configz(t, 7, "good"); code != http.StatusOK {
				t.Fatalf("node 7 answered %d; want 200", code)
			}
		}
		after := farm.Counts()
		if got := (FarmCounts{Probes: after.Probes - before.Probes, TokenReviews: after.TokenReviews - before.TokenReviews, SubjectAccessReviews: after.SubjectAccessReviews - before.SubjectAccessReviews}); got != (FarmCounts{Probes: 3, TokenReviews: 1, SubjectAccessReviews: 1}) {
			t.Errorf("three reads of a new node counted %+v; want 3 probes, 1 TokenReview, 1 SubjectAccessReview", got)
		}
	})
	t.Run("a token the API server does not authenticate is refused", func(t *testing.T) {
		if code, _ := configz(t, 8, "bad"); code != http.StatusUnauthorized {
			t.Errorf("node 8 answered %d to a bad token; want 401", code)
		}
	})
	t.Run("a changed allowlist is served from then on", func(t *testing.T) {
		farm.SetAllowed(9, []string{"kernel.sem"})
		if _, allowed := configz(t, 9, "good"); !slices.Equal(allowed, []string{"kernel.sem"}) {
			t.Errorf("node 9 allows %v; want [kernel.sem]", allowed)
		}
	})
}
