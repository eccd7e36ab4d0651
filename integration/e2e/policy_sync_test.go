package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// policyPoolLabel is the label the example config's pools select nodes by.
const policyPoolLabel = "sysctl-placement.io/pool"

// placedOn reports whether the API server returned pod selecting pool and tolerating
// the taint value taint (the example config taints each pool dedicated=<pool>).
func placedOn(pod *corev1.Pod, pool, taint string) bool {
	if pod.Spec.NodeSelector[policyPoolLabel] != pool {
		return false
	}
	for _, tol := range pod.Spec.Tolerations {
		if tol.Key == "dedicated" && tol.Value == taint {
			return true
		}
	}
	return false
}

// waitPlaced creates pods asking for kernel.shmmax with dryRun=All until the API
// server returns one placed on the ipc pool with a toleration of taint, and returns
// how long that took.
func waitPlaced(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, taint string) time.Duration {
	t.Helper()
	start := time.Now()
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, err := dryRunPod(ctx, c.Client, ns, "kernel.shmmax")
		if err != nil {
			return false, nil //nolint:nilerr // refused while the policies change: create again
		}
		last = pod
		return placedOn(pod, "ipc", taint), nil
	})
	if err != nil {
		if last == nil {
			last = &corev1.Pod{}
		}
		t.Fatalf("no pod placed on ipc with toleration dedicated=%s within a minute (last: nodeSelector %v, tolerations %v): %v",
			taint, last.Spec.NodeSelector, last.Spec.Tolerations, err)
	}
	return time.Since(start)
}

// TestPolicySync: serve --admission=policy, as the shipped ServiceAccount with the
// policy-backend component's RBAC and no webhook configuration registered: the API
// server places pods with the policies serve keeps in sync, also once serve is gone.
func TestPolicySync(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	createSystemNamespace(ctx, t, c)
	example, err := os.ReadFile(filepath.Join(cluster.RepoRoot(), "deploy", "examples", "placement-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(t.TempDir(), "placement-config.yaml")
	if err := os.WriteFile(configFile, example, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := c.StartWebhook(ctx, cluster.WebhookOptions{
		ConfigFile: configFile, AsServiceAccount: true, Name: "policy-serve",
		ExtraRBAC: []string{"deploy/components/policy-backend/rbac.yaml"},
		ExtraArgs: []string{"--admission=policy"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Terminate(30 * time.Second)
		if t.Failed() {
			t.Logf("serve log:\n%s", process.Tail(w.LogFile, 40))
		}
	})
	ns := optedInNamespace(ctx, t, c, "policy-sync", nil)
	changedConfig := strings.Replace(string(example), "taints: [{key: dedicated, value: ipc, effect: NoSchedule}]", "taints: [{key: dedicated, value: ipc-v2, effect: NoSchedule}]", 1)
	if changedConfig == string(example) {
		t.Fatal("the example config no longer taints the ipc pool dedicated=ipc; update this test")
	}

	t.Run("serve applies the policies and the API server places an opted-in pod with them", func(t *testing.T) {
		took := waitPlaced(ctx, t, c, ns, "ipc")
		t.Logf("placed by the policies %v after serve was ready", took.Round(time.Millisecond))
		metricEquals(ctx, t, w, "sysctl_placement_policy_backend_active", "1")
		// The alerts' policy-mode metrics, which a serve in webhook mode does not export
		// (TestMonitoringMetrics checks the others).
		_, exposition, err := w.Get(ctx, "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		exported, used := seriesNames(exposition), 0
		for _, name := range monitoringMetrics(ctx, t) {
			if !policyModeOnly(name) {
				continue
			}
			used++
			if !exported[name] {
				t.Errorf("the rules or the dashboard use %s, which serve --admission=policy does not export", name)
			}
		}
		if used == 0 {
			t.Error("no rule uses a policy-mode metric; want SysctlPlacementPolicyBackendInactive's sysctl_placement_policy_backend_active")
		}
		for _, name := range []string{"sysctl-placement", "sysctl-placement-warnings"} {
			vap, err := c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !managedBy(vap.ManagedFields, "sysctl-placement-policy") {
				t.Errorf("ValidatingAdmissionPolicy %s is not managed by the field manager sysctl-placement-policy: %v", name, vap.ManagedFields)
			}
		}
		// What `pools` prints: the status beside the discovery result.
		cm, err := c.Client.CoreV1().ConfigMaps("sysctl-placement").Get(ctx, "sysctl-placement-discovery", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st := cm.Data["policy.json"]; !strings.Contains(st, `"active":true`) {
			t.Errorf("the published policy status is %q; want it active", st)
		}
		if _, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{}); err == nil {
			t.Fatal("a MutatingWebhookConfiguration is registered; the test must prove the policies alone place pods")
		}
	})

	// Drill 2: the config changes (the ipc pool's taint becomes dedicated=ipc-v2); serve
	// reloads it, renders, applies, and the API server places pods by it.
	t.Run("a config change is in force in the API server within seconds", func(t *testing.T) {
		writeConfig(t, configFile, changedConfig)
		took := waitPlaced(ctx, t, c, ns, "ipc-v2")
		t.Logf("drill 2: %.2f s from the config change to the API server placing pods by it", took.Seconds())
	})

	// A configuration past the cost bound: the policies are deleted, so the API server
	// no longer places pods by the old one, and serve says why in the metric and in
	// `pools`; a smaller one puts them back.
	t.Run("a configuration the cost model refuses takes the policies out of force and pools and audit say why", func(t *testing.T) {
		writeConfig(t, configFile, manyPoolsConfig(10))
		metricEquals(ctx, t, w, "sysctl_placement_policy_backend_active", "0")
		metricEquals(ctx, t, w, `sysctl_placement_policy_refused_total{reason="Cost"}`, "1")
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := c.Client.AdmissionregistrationV1().MutatingAdmissionPolicies().Get(ctx, "sysctl-placement", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatalf("the MutatingAdmissionPolicy of the previous config is still there: %v", err)
		}
		bin, err := cluster.SysctlPlacement.Path()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, bin, "pools", "--kubeconfig", c.Kubeconfig, "--config", configFile).CombinedOutput()
		if err != nil {
			t.Fatalf("pools: %v\n%s", err, out)
		}
		want := "Policy backend: NOT in force (Cost): the policies would cost the API server"
		if !strings.Contains(string(out), want) {
			t.Errorf("pools does not say why the policies are refused (want %q):\n%s", want, out)
		}
		out, err = exec.CommandContext(ctx, bin, "audit", "--kubeconfig", c.Kubeconfig, "--config", configFile, "-n", ns).CombinedOutput()
		if err != nil {
			t.Fatalf("audit: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("audit does not say why the policies are refused (want %q):\n%s", want, out)
		}
		writeConfig(t, configFile, changedConfig)
		waitPlaced(ctx, t, c, ns, "ipc-v2")
		metricEquals(ctx, t, w, "sysctl_placement_policy_backend_active", "1")
	})

	// Drill 1: serve is killed; nothing runs, and the API server still places pods.
	t.Run("with serve killed the API server still places pods", func(t *testing.T) {
		if err := w.Kill(); err != nil {
			t.Fatal(err)
		}
		pod := sysctlPod("after-serve")
		got, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("with serve gone the API server refused the pod: %v", err)
		}
		if !placedOn(got, "ipc", "ipc-v2") {
			t.Errorf("with serve gone the pod was not placed by the current config: nodeSelector %v, tolerations %v", got.Spec.NodeSelector, got.Spec.Tolerations)
		}
	})

	// A helm upgrade back to the webhook backend, serve being gone (the policy backend's
	// RBAC went with the upgrade): the chart's stale-policies hook runs its Job's command
	// as its own ServiceAccount, with the hook's rendered RBAC only. The policies are put
	// back afterwards, as serve left them, for the uninstall below.
	t.Run("after a switch back to the webhook the chart's hook deletes the stale policies", func(t *testing.T) {
		saved := admissionPolicies(ctx, t, c)
		_, objs := helmTemplate(ctx, t, "admission.backend=webhook")
		out := runRenderedHook(ctx, t, c, objs, "sysctl-placement-stale-policies")
		policiesGoneAndPodsUnplaced(ctx, t, c, ns, out)
		restoreAdmissionPolicies(ctx, t, c, saved)
		t.Logf("placed by the restored policies %v after their creation", waitPlaced(ctx, t, c, ns, "ipc-v2").Round(time.Millisecond))
	})

	// What helm uninstall does next, serve being gone: the chart's post-delete hook runs
	// its Job's command as its own ServiceAccount, with the hook's rendered RBAC only.
	t.Run("the chart's post-delete hook deletes the policies with its own RBAC", func(t *testing.T) {
		_, objs := helmTemplate(ctx, t, "admission.backend=policy")
		out := runRenderedHook(ctx, t, c, objs, "sysctl-placement-cleanup")
		policiesGoneAndPodsUnplaced(ctx, t, c, ns, out)
	})
}

// runRenderedHook creates the rendered hook's ServiceAccount and RBAC (those named
// hook) and runs its Job's command as that ServiceAccount, returning the output.
func runRenderedHook(ctx context.Context, t *testing.T, c *cluster.Cluster, objs []*unstructured.Unstructured, hook string) []byte {
	t.Helper()
	createRendered(ctx, t, find(t, objs, "ServiceAccount", hook), c.Client.CoreV1().ServiceAccounts(chartNamespace).Create)
	for _, o := range objs {
		if o.GetName() != hook {
			continue
		}
		switch o.GetKind() {
		case "Role":
			createRendered(ctx, t, o, c.Client.RbacV1().Roles(chartNamespace).Create)
		case "RoleBinding":
			createRendered(ctx, t, o, c.Client.RbacV1().RoleBindings(chartNamespace).Create)
		case "ClusterRole":
			createRendered(ctx, t, o, c.Client.RbacV1().ClusterRoles().Create)
		case "ClusterRoleBinding":
			createRendered(ctx, t, o, c.Client.RbacV1().ClusterRoleBindings().Create)
		}
	}
	kubeconfig := serviceAccountKubeconfig(ctx, t, c, chartNamespace, hook)
	bin, err := cluster.SysctlPlacement.Path()
	if err != nil {
		t.Fatal(err)
	}
	args := append(containerArgs(t, find(t, objs, "Job", hook)), "--kubeconfig", kubeconfig)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	t.Logf("the hook's output:\n%s", out)
	return out
}

// policiesGoneAndPodsUnplaced fails unless no admission policy of the sync is left and,
// once the API server's policy cache has seen the deletions, a pod is admitted as it
// asked.
func policiesGoneAndPodsUnplaced(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string, out []byte) {
	t.Helper()
	a := c.Client.AdmissionregistrationV1()
	if l, err := a.MutatingAdmissionPolicies().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=admission-policy"}); err != nil || len(l.Items) != 0 {
		t.Errorf("after the hook: MutatingAdmissionPolicies %v (%v); want none\n%s", l, err, out)
	}
	if l, err := a.ValidatingAdmissionPolicies().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=admission-policy"}); err != nil || len(l.Items) != 0 {
		t.Errorf("after the hook: ValidatingAdmissionPolicies %v (%v); want none\n%s", l, err, out)
	}
	deleted := time.Now()
	var got *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = c.Client.CoreV1().Pods(ns).Create(ctx, sysctlPod("after-hook"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		return got.Spec.NodeSelector[policyPoolLabel] == "", nil
	})
	if err != nil {
		t.Errorf("after the hook the pod is still placed (%v): nodeSelector %v, tolerations %v", err, got.Spec.NodeSelector, got.Spec.Tolerations)
	}
	t.Logf("pods admitted unplaced %v after the hook deleted the policies", time.Since(deleted).Round(time.Millisecond))
}

// savedPolicies are the sync's admission policies and bindings as read.
type savedPolicies struct {
	maps  []admissionregistrationv1.MutatingAdmissionPolicy
	mapbs []admissionregistrationv1.MutatingAdmissionPolicyBinding
	vaps  []admissionregistrationv1.ValidatingAdmissionPolicy
	vapbs []admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// admissionPolicies reads the sync's admission policies and bindings (by its label).
func admissionPolicies(ctx context.Context, t *testing.T, c *cluster.Cluster) savedPolicies {
	t.Helper()
	a := c.Client.AdmissionregistrationV1()
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=admission-policy"}
	var s savedPolicies
	m, err := a.MutatingAdmissionPolicies().List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := a.MutatingAdmissionPolicyBindings().List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.ValidatingAdmissionPolicies().List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	vb, err := a.ValidatingAdmissionPolicyBindings().List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.maps, s.mapbs, s.vaps, s.vapbs = m.Items, mb.Items, v.Items, vb.Items
	if n := len(s.maps) + len(s.mapbs) + len(s.vaps) + len(s.vapbs); n != 6 {
		t.Fatalf("found %d of the sync's admission policies and bindings; want the six serve applied", n)
	}
	return s
}

// restoreAdmissionPolicies creates the saved objects again, as new objects.
func restoreAdmissionPolicies(ctx context.Context, t *testing.T, c *cluster.Cluster, s savedPolicies) {
	t.Helper()
	a := c.Client.AdmissionregistrationV1()
	err := errors.Join(
		recreate(ctx, s.maps, a.MutatingAdmissionPolicies().Create),
		recreate(ctx, s.mapbs, a.MutatingAdmissionPolicyBindings().Create),
		recreate(ctx, s.vaps, a.ValidatingAdmissionPolicies().Create),
		recreate(ctx, s.vapbs, a.ValidatingAdmissionPolicyBindings().Create),
	)
	if err != nil {
		t.Fatalf("putting the policies back: %v", err)
	}
}

// recreate creates each of objs again as a new object: what the API server set in its
// metadata (UID, resourceVersion, generation, timestamps, managed fields) is dropped.
func recreate[T any, PT interface {
	*T
	metav1.Object
}](ctx context.Context, objs []T, create func(context.Context, PT, metav1.CreateOptions) (PT, error)) error {
	var errs []error
	for i := range objs {
		o := PT(&objs[i])
		o.SetUID("")
		o.SetResourceVersion("")
		o.SetGeneration(0)
		o.SetCreationTimestamp(metav1.Time{})
		o.SetManagedFields(nil)
		if _, err := create(ctx, o, metav1.CreateOptions{}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// createRendered creates a rendered object as its type T with create.
func createRendered[T any](ctx context.Context, t *testing.T, o *unstructured.Unstructured, create func(context.Context, *T, metav1.CreateOptions) (*T, error)) {
	t.Helper()
	v := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, v); err != nil {
		t.Fatal(err)
	}
	if _, err := create(ctx, v, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the rendered %s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

func managedBy(fields []metav1.ManagedFieldsEntry, manager string) bool {
	for _, f := range fields {
		if f.Manager == manager && f.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

// writeConfig replaces the config file in one rename, as a ConfigMap volume does.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// manyPoolsConfig is a PlacementConfig of n pools shaped like the example's.
func manyPoolsConfig(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: sysctl-placement.io/v1alpha1\nkind: PlacementConfig\npools:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: pool-%[1]d\n    nodeSelector: {sysctl-placement.io/pool: pool-%[1]d}\n    taints: [{key: dedicated, value: pool-%[1]d, effect: NoSchedule}]\n    allowedUnsafeSysctls: [\"kernel.shm*\", \"kernel.sem\", \"net.ipv4.conf.eth%[1]d.*\"]\n", i)
	}
	return b.String()
}
