package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// restrictedDiscoveryConfig discovers every pool and opens the dedicated net pool to
// the namespaces labelled team=db only (ipc stays open: RegisterWebhook's probe pod
// asks for kernel.shmmax in a namespace of its own).
const restrictedDiscoveryConfig = discoveryConfig + `  pools:
    - name: net
      namespaceSelector: {matchLabels: {team: db}}
`

// labelledNamespace creates an opted-in namespace with the label team.
func labelledNamespace(ctx context.Context, t *testing.T, c *cluster.Cluster, name, team string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"sysctl-placement.io/enabled": "true", "team": team}}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// dryRunPod creates a pod asking for sysctl with dry run and returns it as admitted.
func dryRunPod(ctx context.Context, client kubernetes.Interface, ns, sysctl string) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: sysctl, Value: "552"}}},
			Containers:      []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
	return client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// TestADiscoveredPoolOpensOnlyToItsNamespaces runs serve with discovery against the
// hollow kubelets and discovery.pools restricting the discovered net pool to team=db.
func TestADiscoveredPoolOpensOnlyToItsNamespaces(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
		t.Fatal(err)
	}
	dw := startDiscoveryWebhookWith(ctx, t, c, "restricted", restrictedDiscoveryConfig)
	db := labelledNamespace(ctx, t, c, "db", "db")
	web := labelledNamespace(ctx, t, c, "web", "web")

	t.Run("a pod in the pool's namespace is placed on it with its toleration", func(t *testing.T) {
		pod, err := dryRunPod(ctx, c.Client, db, "net.core.somaxconn")
		if err != nil {
			t.Fatal(err)
		}
		tolerated := slices.ContainsFunc(pod.Spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == "dedicated" && t.Value == "net" })
		if pod.Spec.NodeSelector[cluster.PoolLabel] != "net" || !tolerated {
			t.Errorf("pod in db: nodeSelector %v, tolerations %v; want net and its dedicated=net toleration", pod.Spec.NodeSelector, pod.Spec.Tolerations)
		}
	})

	t.Run("a discovered pool restricted to namespace X gives no toleration to a pod in Y", func(t *testing.T) {
		pod, err := dryRunPod(ctx, c.Client, web, "net.core.somaxconn")
		if err == nil {
			t.Fatalf("pod in web was admitted with nodeSelector %v and tolerations %v; want it denied: no pool open to web allows net.core.somaxconn",
				pod.Spec.NodeSelector, pod.Spec.Tolerations)
		}
		if !strings.Contains(err.Error(), "pool net: not available to namespace web") {
			t.Errorf("pod in web: %v; want a denial saying pool net is not available to namespace web", err)
		}
	})

	t.Run("the pools command shows the restriction", func(t *testing.T) {
		bin, err := cluster.SysctlPlacement.Path()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, bin, "pools", "--kubeconfig", c.Kubeconfig, "--config", dw.configFile, "--kubelet-ca-file", dw.caFile, "-o", "json").Output()
		if err != nil {
			t.Fatalf("pools: %v", err)
		}
		var pools []struct {
			Name              string                `json:"name"`
			NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector"`
		}
		if err := json.Unmarshal(out, &pools); err != nil {
			t.Fatalf("pools -o json: %v\n%s", err, out)
		}
		for _, p := range pools {
			if restricted := p.NamespaceSelector != nil && p.NamespaceSelector.MatchLabels["team"] == "db"; restricted != (p.Name == "net") {
				t.Errorf("pool %s has namespaceSelector %v; want team=db on net only", p.Name, p.NamespaceSelector)
			}
		}
	})
}

func TestDiscoveryCredentials(t *testing.T) {
	// TestDiscoveryCredentials ("a compromised node gets a token that cannot list pods") runs serve with discovery as
	// installed, next to a Node whose kubelet API is the test's own server with a
	// certificate from the kubelet CA: what an attacker who controls one node sees.
	t.Run("a compromised node gets a token that cannot list pods", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
		defer cancel()
		if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
			t.Fatal(err)
		}
		rogue, err := c.StartCompromisedNode(ctx, "rogue-1", "rogue", "kernel.shmmax")
		if err != nil {
			t.Fatal(err)
		}
		defer rogue.Close()
		startDiscoveryWebhook(ctx, t, c, "hostile-node")
		ns := optedInNamespace(ctx, t, c, "tenant", nil)

		t.Run("discovery through the hollow kubelets works with the discovery token", func(t *testing.T) {
			if pool, err := dryRunPool(ctx, c.Client, ns, "net.core.somaxconn"); err != nil || pool != "net" {
				t.Errorf("a pod asking for net.core.somaxconn went to %q (%v); want net, read from its kubelets' /configz", pool, err)
			}
		})

		var token string
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			tokens := rogue.Tokens()
			if len(tokens) > 0 {
				token = tokens[0]
			}
			return token != "", nil
		}); err != nil {
			t.Fatalf("the compromised node was never read with a token: %v", err)
		}

		t.Run("the token it receives is the discovery account's", func(t *testing.T) {
			tr, err := c.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if want := "system:serviceaccount:sysctl-placement:sysctl-placement-discovery"; !tr.Status.Authenticated || tr.Status.User.Username != want {
				t.Errorf("the node got a token of %q (authenticated %v); want %s", tr.Status.User.Username, tr.Status.Authenticated, want)
			}
		})

		t.Run("the token discovery sends to a kubelet cannot list pods", func(t *testing.T) {
			for _, attrs := range []authorizationv1.ResourceAttributes{
				{Verb: "list", Resource: "pods"},
				{Verb: "get", Resource: "nodes", Subresource: "proxy", Name: "ipc-1"},
				{Verb: "update", Resource: "configmaps", Namespace: "sysctl-placement", Name: "sysctl-placement-discovery"},
			} {
				if serviceAccountMay(ctx, t, c, "sysctl-placement", "sysctl-placement-discovery", attrs) {
					t.Errorf("the discovery account may %s %s/%s; want denied", attrs.Verb, attrs.Resource, attrs.Subresource)
				}
			}
			cfg := rest.AnonymousClientConfig(c.Config)
			cfg.BearerToken = token
			_, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
			if !apierrors.IsForbidden(err) {
				t.Errorf("listing pods with the token the node got: %v; want Forbidden", err)
			}
		})
	})
}
