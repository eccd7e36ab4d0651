package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// discoveryConfig has no static pool: every pool comes from the Nodes.
const discoveryConfig = `apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
discovery:
  poolLabel: sysctl-placement.io/pool
  allowlistFrom: configz
`

// discoveredPool is one entry of `sysctl-placement pools -o json`.
type discoveredPool struct {
	Name                 string         `json:"name"`
	Nodes                int            `json:"nodes"`
	Taints               []corev1.Taint `json:"taints"`
	AllowedUnsafeSysctls []string       `json:"allowedUnsafeSysctls"`
	Source               string         `json:"source"`
	Used                 bool           `json:"used"`
	Problems             []struct {
		Kind   string `json:"kind"`
		Detail string `json:"detail"`
	} `json:"problems"`
}

func TestDiscovery(t *testing.T) {
	// TestDiscovery ("discovery finds the pools from the kubelets and placement follows them") runs serve with
	// discovery and no static pool, as the shipped ServiceAccount with exactly the shipped
	// RBAC, against real (hollow) kubelets: /configz over HTTPS from each kubelet's own
	// server, which checks the token with a TokenReview and the permission with a
	// SubjectAccessReview for nodes/configz. A stopped kubelet is an unreachable one.
	t.Run("discovery finds the pools from the kubelets and placement follows them", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
		defer cancel()
		// A pool whose second node's kubelet allows less than the first's.
		specs := append(cluster.DefaultPools(), cluster.PoolSpec{
			Name: "mixed", Nodes: 2,
			Taints:                   []corev1.Taint{{Key: "dedicated", Value: "mixed", Effect: corev1.TaintEffectNoSchedule}},
			AllowedUnsafeSysctls:     []string{"kernel.shm*", "kernel.sem"},
			NodeAllowedUnsafeSysctls: map[string][]string{"mixed-2": {"kernel.sem"}},
		})
		pools, err := c.AddPools(ctx, specs...)
		if err != nil {
			t.Fatal(err)
		}
		const refresh = 2 * time.Second
		dw := startDiscoveryWebhook(ctx, t, c, "discovery", "--discovery-refresh", refresh.String())
		wh, kubeconfig, configFile, caFile := dw.Webhook, dw.kubeconfig, dw.configFile, dw.caFile
		env := &placementEnv{Cluster: c, webhook: wh, pools: map[string]*cluster.Pool{}, warnings: &warningRecorder{}}
		for _, p := range pools {
			env.pools[p.Spec.Name] = p
		}
		cfg := rest.CopyConfig(c.Config)
		cfg.WarningHandler = env.warnings
		env.client = kubernetes.NewForConfigOrDie(cfg)
		ns := optedInNamespace(ctx, t, c, "discovered", nil)

		poolsCommand := func(t *testing.T) map[string]discoveredPool {
			t.Helper()
			bin, err := cluster.SysctlPlacement.Path()
			if err != nil {
				t.Fatal(err)
			}
			// As the webhook's ServiceAccount, which may not read /configz itself: like serve,
			// pools sends kubelets a token of the discovery account.
			cmd := exec.CommandContext(ctx, bin, "pools", "--kubeconfig", kubeconfig, "--config", configFile, "--kubelet-ca-file", caFile,
				"--discovery-service-account", "sysctl-placement/sysctl-placement-discovery", "-o", "json")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("sysctl-placement pools: %v\n%s", err, stderr.String())
			}
			var list []discoveredPool
			if err := json.Unmarshal(out, &list); err != nil {
				t.Fatalf("pools -o json: %v\n%s", err, out)
			}
			got := map[string]discoveredPool{}
			for _, p := range list {
				got[p.Name] = p
			}
			return got
		}

		t.Run("the pools command finds the pools, their taints and what their kubelets allow", func(t *testing.T) {
			got := poolsCommand(t)
			for name, want := range map[string][]string{
				"ipc": {"kernel.msg*", "kernel.sem", "kernel.shm*"}, "net": {"net.core.somaxconn", "net.ipv4.tcp_*"}, "general": {},
			} {
				p := got[name]
				if p.Source != "configz" || p.Nodes != 2 || !p.Used || !reflect.DeepEqual(p.AllowedUnsafeSysctls, want) || len(p.Problems) != 0 {
					t.Errorf("pool %s = %+v; want 2 nodes from configz allowing %v, no problems", name, p, want)
				}
			}
			if ipc := got["ipc"]; len(ipc.Taints) != 1 || ipc.Taints[0].Value != "ipc" {
				t.Errorf("ipc taints = %v, want dedicated=ipc:NoSchedule", ipc.Taints)
			}
		})

		t.Run("a pool with one disagreeing node allows only the intersection and reports it", func(t *testing.T) {
			mixed := poolsCommand(t)["mixed"]
			if !reflect.DeepEqual(mixed.AllowedUnsafeSysctls, []string{"kernel.sem"}) || len(mixed.Problems) != 1 ||
				mixed.Problems[0].Kind != "NodesDisagree" || !strings.Contains(mixed.Problems[0].Detail, "mixed-2") {
				t.Errorf("mixed = %+v; want [kernel.sem] and NodesDisagree naming mixed-2", mixed)
			}
			metricEquals(ctx, t, wh, `sysctl_placement_discovery_problems{kind="NodesDisagree"}`, "1")
		})

		t.Run("an unchanged Deployment runs on the discovered ipc pool", func(t *testing.T) {
			if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, postgres(2), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, p := range env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(labels.Set{"app": "postgres"}), 2) {
				if pool := env.poolOf(ctx, t, &p); pool != "ipc" {
					t.Errorf("pod %s runs in pool %q, want ipc", p.Name, pool)
				}
			}
		})

		const newSysctl = "net.ipv4.route.min_pmtu"
		t.Run("changing a pool's allowlist and restarting its kubelets changes placement within the refresh", func(t *testing.T) {
			if pool, err := dryRunPool(ctx, env.client, ns, newSysctl); err == nil {
				t.Fatalf("before the change a pod asking for %s was placed on %q; want it refused", newSysctl, pool)
			}
			if err := c.RestartPoolKubelets(ctx, "net", []string{"net.core.somaxconn", "net.ipv4.tcp_*", newSysctl}); err != nil {
				t.Fatal(err)
			}
			var pool string
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 3*refresh, true, func(ctx context.Context) (bool, error) {
				pool, err = dryRunPool(ctx, env.client, ns, newSysctl)
				return err == nil, nil
			})
			if err != nil || pool != "net" {
				t.Fatalf("a pod asking for %s was not placed on net within %s of the restart (pool %q, last error %v)", newSysctl, 3*refresh, pool, err)
			}
		})

		t.Run("an unreachable kubelet keeps its last known allowlist and is reported", func(t *testing.T) {
			if err := c.StopKubelet("net-1"); err != nil {
				t.Fatal(err)
			}
			metricEquals(ctx, t, wh, `sysctl_placement_discovery_problems{kind="KubeletUnreachable"}`, "1")
			if pool, err := dryRunPool(ctx, env.client, ns, newSysctl); err != nil || pool != "net" {
				t.Errorf("with net-1 unreachable a pod asking for %s went to %q (%v); want net, from the last known allowlist", newSysctl, pool, err)
			}
		})

		t.Run("the shipped discovery account may get nodes/configz and not nodes/proxy", func(t *testing.T) {
			for sub, want := range map[string]bool{"configz": true, "proxy": false} {
				attrs := authorizationv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: sub, Name: "ipc-1"}
				if got := serviceAccountMay(ctx, t, c, "sysctl-placement", "sysctl-placement-discovery", attrs); got != want {
					t.Errorf("get nodes/%s allowed = %v, want %v", sub, got, want)
				}
			}
		})
	})
}

// serviceAccountMay asks the API server (SubjectAccessReview) whether the
// ServiceAccount may do what attrs say.
func serviceAccountMay(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name string, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	sar, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: "system:serviceaccount:" + ns + ":" + name, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		ResourceAttributes: &attrs,
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// dryRunPool creates a pod asking for sysctl with dry run and returns the pool the
// webhook placed it on, or the admission error.
func dryRunPool(ctx context.Context, client kubernetes.Interface, ns, sysctl string) (string, error) {
	got, err := dryRunPod(ctx, client, ns, sysctl)
	if err != nil {
		return "", err
	}
	pool, ok := got.Spec.NodeSelector[cluster.PoolLabel]
	if !ok {
		return "", errors.New("the pod was admitted without a pool selector")
	}
	return pool, nil
}

// discoveryWebhook is serve with a discovery config, as the shipped ServiceAccount,
// reading the kubelets' /configz verified by the simulated kubelets' CA, and
// registered with the API server.
type discoveryWebhook struct {
	*cluster.Webhook
	kubeconfig, configFile, caFile string
}

func startDiscoveryWebhook(ctx context.Context, t *testing.T, c *cluster.Cluster, name string, extraArgs ...string) discoveryWebhook {
	t.Helper()
	return startDiscoveryWebhookWith(ctx, t, c, name, discoveryConfig, extraArgs...)
}

// startDiscoveryWebhookWith is startDiscoveryWebhook with the given PlacementConfig.
func startDiscoveryWebhookWith(ctx context.Context, t *testing.T, c *cluster.Cluster, name, config string, extraArgs ...string) discoveryWebhook {
	t.Helper()
	createSystemNamespace(ctx, t, c)
	id, err := c.ApplyShippedIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dw := discoveryWebhook{kubeconfig: id.Kubeconfig, configFile: filepath.Join(c.WorkDir, name+"-config.yaml")}
	if dw.caFile, err = c.KubeletCAFile(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dw.configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	dw.Webhook, err = c.StartWebhook(ctx, cluster.WebhookOptions{
		Name: name, ConfigFile: dw.configFile, Kubeconfig: dw.kubeconfig,
		ExtraArgs: append([]string{"--kubelet-ca-file", dw.caFile}, extraArgs...),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dw.Terminate(30 * time.Second)
		if t.Failed() {
			t.Logf("webhook log:\n%s", process.Tail(dw.LogFile, 40))
		}
	})
	if err := c.RegisterWebhook(ctx, dw.Webhook); err != nil {
		t.Fatal(err)
	}
	return dw
}

// metricEquals polls the webhook's /metrics until the sample has the value.
func metricEquals(ctx context.Context, t *testing.T, wh *cluster.Webhook, sample, value string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, body, err := wh.Get(ctx, "/metrics")
		if err != nil {
			return false, nil
		}
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
				last = v
				return v == value, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("metric %s = %q, want %s", sample, last, value)
	}
}

func mustUnmarshal(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatal(err)
	}
}
