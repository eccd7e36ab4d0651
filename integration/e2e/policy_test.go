package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// Namespace keys of sysctl-placement (scheduling's; the integration module does not
// import the main module).
const (
	policyEnabled     = "sysctl-placement.io/enabled"
	policyUnplaceable = "sysctl-placement.io/unplaceable"
	policyPools       = "sysctl-placement.io/pools"
)

// policyHostModes are the namespace annotations of the host-namespace clash modes.
var policyHostModes = []string{"sysctl-placement.io/host-ipc", "sysctl-placement.io/host-network", "sysctl-placement.io/host-users"}

// goldenConfig is the configuration the golden cases are planned against.
var goldenConfig = filepath.Join(cluster.RepoRoot(), "scheduling", "testdata", "config.yaml")

// policyNamespace is a namespace's labels and annotations.
type policyNamespace struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func (ns policyNamespace) optedIn() bool {
	return ns.Labels[policyEnabled] == "true" || ns.Annotations[policyEnabled] == "true"
}

// policyLimits are the golden cases where the policy backend cannot give Plan's
// answer, each with the reason docs/design.md ("Policy backend") gives. The test
// fails when such a case starts to agree, so the list cannot go stale.
var policyLimits = map[string]string{
	// CEL cannot parse the JSON of the namespace's tolerationsWhitelist annotation.
	"tolerations-whitelist": "the policies do not read scheduler.alpha.kubernetes.io/tolerationsWhitelist",
}

// goldenPolicyCase is the shape of scheduling/testdata/golden/*.input.yaml.
type goldenPolicyCase struct {
	Namespace policyNamespace `json:"namespace"`
	Template  bool            `json:"template,omitempty"`
	Pod       corev1.Pod      `json:"pod"`
}

func TestPolicyRender(t *testing.T) {
	// The webhook-free backend: the rendered policies, applied to a real API server, make
	// the decision scheduling.Plan makes for every golden pod and a fuzzed corpus, each
	// created with dryRun=All in its own namespace.
	t.Run("rendered policies place every golden pod as plan does", func(t *testing.T) {
		bin, err := cluster.SysctlPlacement.Path()
		if err != nil {
			t.Fatal(err)
		}
		// The golden config's six pools cost more than the webhook: the test is about
		// decisions, not speed.
		policies, err := cluster.RenderPolicies(t.Context(), "--config", goldenConfig, "--allow-slower-than-webhook")
		if err != nil {
			t.Fatal(err)
		}
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		applyPolicies(ctx, t, c, policies)
		warned := newWarningClient(t, c)

		paths, err := filepath.Glob(filepath.Join(cluster.RepoRoot(), "scheduling", "testdata", "golden", "*.input.yaml"))
		if err != nil || len(paths) < 20 {
			t.Fatalf("golden inputs: %d, %v", len(paths), err)
		}
		var cases []policyCase
		for _, path := range paths {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var g goldenPolicyCase
			if err := yaml.UnmarshalStrict(data, &g); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if g.Template {
				continue // the policies handle Pods; docs/design.md says so
			}
			cases = append(cases, policyCase{name: strings.TrimSuffix(filepath.Base(path), ".input.yaml"), ns: g.Namespace, pod: g.Pod})
		}
		golden := len(cases)
		cases = append(cases, fuzzedPolicyCases(200)...)

		var agreed, limits int
		for i, pc := range cases {
			t.Run(pc.name, func(t *testing.T) {
				diff := pc.compare(ctx, t, c, warned, bin, fmt.Sprintf("policy-%d", i))
				why, limit := policyLimits[pc.name]
				switch {
				case diff == "" && limit:
					t.Errorf("agrees with Plan now; remove it from policyLimits (%s) and from docs/design.md", why)
				case diff == "":
					agreed++
				case limit:
					limits++
					t.Logf("documented limit (%s): %s", why, diff)
				default:
					t.Errorf("the policies and Plan differ: %s", diff)
				}
			})
		}
		t.Logf("%d of %d pods (%d golden, %d fuzzed) agree with Plan; %d documented limits", agreed, len(cases), golden, len(cases)-golden, limits)
	})

	// With --discover, render takes the pools from the live cluster as `pools` does (here
	// the allowlists from each kubelet's /configz) and the API server places by them.
	t.Run("policy render discover compiles the live cluster pools", func(t *testing.T) {
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
			t.Fatal(err)
		}
		caFile, err := c.KubeletCAFile()
		if err != nil {
			t.Fatal(err)
		}
		configFile := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(configFile, []byte(discoveryConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		// As the shipped ServiceAccount, sending kubelets the discovery account's tokens,
		// as TestDiscovery ("discovery finds the pools from the kubelets and placement follows them") runs `pools`.
		createSystemNamespace(ctx, t, c)
		id, err := c.ApplyShippedIdentity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		policies, err := cluster.RenderPolicies(ctx, "--discover", "--kubeconfig", id.Kubeconfig, "--config", configFile, "--kubelet-ca-file", caFile,
			"--discovery-service-account", "sysctl-placement/sysctl-placement-discovery")
		if err != nil {
			t.Fatal(err)
		}
		var mutation strings.Builder
		for _, v := range policies.Mutating.Spec.Variables {
			mutation.WriteString(v.Expression)
		}
		for _, want := range []string{`startsWith("kernel.shm")`, `startsWith("net.ipv4.tcp_")`, `"sysctl-placement.io/pool"`} {
			if !strings.Contains(mutation.String(), want) {
				t.Errorf("the rendered mutation lacks %s: the discovered pools are not compiled", want)
			}
		}
		applyPolicies(ctx, t, c, policies)
		ns := optedInNamespace(ctx, t, c, "discovered-policy", nil)
		got, err := c.Client.CoreV1().Pods(ns).Create(ctx, sysctlPod("pg"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatal(err)
		}
		if pool := got.Spec.NodeSelector[cluster.PoolLabel]; pool != "ipc" {
			t.Errorf("a pod asking for kernel.shmmax and kernel.sem got nodeSelector %v, want the discovered ipc pool", got.Spec.NodeSelector)
		}
	})
}

// policyCase is one pod in one namespace.
type policyCase struct {
	name string
	ns   policyNamespace
	pod  corev1.Pod
}

// compare creates the pod with dryRun=All in a fresh namespace like pc.ns, and
// returns how the result differs from Plan's; "" when it does not. It then creates
// the result again: a placed pod must come back unchanged (reinvocation).
func (pc policyCase) compare(ctx context.Context, t *testing.T, c *cluster.Cluster, warned *warningClient, bin, nsName string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName, Labels: map[string]string{}, Annotations: maps.Clone(pc.ns.Annotations)}}
	maps.Copy(ns.Labels, pc.ns.Labels)
	if pc.ns.optedIn() {
		ns.Labels[policyEnabled] = "true"
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{}); err != nil {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	d, want := planOffline(ctx, t, bin, ns, &pc.pod)
	// With either backend the API server itself refuses some pods Plan admits (a
	// flagged clash, Pod Security): Plan's pod in a twin namespace that has not opted
	// in says whether it would.
	twin := ns.DeepCopy()
	twin.Name = nsName + "-off"
	delete(twin.Labels, policyEnabled)
	delete(twin.Annotations, policyEnabled)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, twin, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	control := want.DeepCopy()
	control.Namespace, control.ResourceVersion = twin.Name, ""
	if _, err := c.Client.CoreV1().Pods(twin.Name).Create(ctx, control, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil && d.Allowed {
		d.Allowed, d.Message = false, "the API server refuses Plan's pod: "+err.Error()
	}

	pod := pc.pod.DeepCopy()
	pod.Namespace, pod.ResourceVersion = nsName, ""
	warned.reset()
	got, err := warned.client.CoreV1().Pods(nsName).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	const warnUnplaceable = "admitted without placement (policy warn)"
	planWarns := slices.ContainsFunc(d.Warnings, func(w string) bool { return strings.Contains(w, warnUnplaceable) })
	for _, w := range warned.texts() {
		if strings.Contains(w, "resulted in error") || strings.Contains(w, "evaluation error") {
			return "a policy failed: " + w
		}
	}
	if apiWarns := slices.ContainsFunc(warned.texts(), func(w string) bool { return strings.Contains(w, warnUnplaceable) }); err == nil && planWarns != apiWarns {
		return fmt.Sprintf("Plan warns %q, the API server %q", d.Warnings, warned.texts())
	}
	switch {
	case err != nil && d.Allowed:
		return fmt.Sprintf("Plan admits the pod (warnings %q), the API server refused it: %v", d.Warnings, err)
	case err != nil:
		return ""
	case !d.Allowed:
		return fmt.Sprintf("Plan denies the pod (%s), the API server admitted it", d.Message)
	}
	if diff := placementDiff(want, got); diff != "" {
		return fmt.Sprintf("Plan (warnings %q): %s", d.Warnings, diff)
	}
	again := got.DeepCopy()
	again.ResourceVersion, again.UID, again.CreationTimestamp = "", "", metav1.Time{}
	regot, err := c.Client.CoreV1().Pods(nsName).Create(ctx, again, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return fmt.Sprintf("the placed pod is refused when created again: %v", err)
	}
	if diff := placementDiff(got, regot); diff != "" {
		return "created again, the placed pod changes: " + diff
	}
	return ""
}

// warningClient is a client that keeps the warnings of its last request.
type warningClient struct {
	client kubernetes.Interface
	mu     sync.Mutex
	got    []string
}

func newWarningClient(t *testing.T, c *cluster.Cluster) *warningClient {
	t.Helper()
	w := &warningClient{}
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = w
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.client = client
	return w
}

// HandleWarningHeader is rest.WarningHandler.
func (w *warningClient) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, text)
}

func (w *warningClient) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = nil
}

func (w *warningClient) texts() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// placementDiff compares what admission decides: placement, tolerations (the API
// server's default not-ready/unreachable ones aside), host namespaces and sysctls.
func placementDiff(want, got *corev1.Pod) string {
	w, g := &want.Spec, &got.Spec
	var diffs []string
	if !apiequality.Semantic.DeepEqual(emptyNil(w.NodeSelector), emptyNil(g.NodeSelector)) {
		diffs = append(diffs, fmt.Sprintf("nodeSelector want %v got %v", w.NodeSelector, g.NodeSelector))
	}
	if !apiequality.Semantic.DeepEqual(w.Affinity, g.Affinity) {
		diffs = append(diffs, fmt.Sprintf("affinity want %s got %s", toYAML(w.Affinity), toYAML(g.Affinity)))
	}
	if wt, gt := ownTolerations(w.Tolerations), ownTolerations(g.Tolerations); !apiequality.Semantic.DeepEqual(wt, gt) {
		diffs = append(diffs, fmt.Sprintf("tolerations want %s got %s", toYAML(wt), toYAML(gt)))
	}
	if w.HostIPC != g.HostIPC || w.HostNetwork != g.HostNetwork || !apiequality.Semantic.DeepEqual(w.HostUsers, g.HostUsers) {
		diffs = append(diffs, fmt.Sprintf("host namespaces want ipc=%v net=%v users=%v got ipc=%v net=%v users=%v", w.HostIPC, w.HostNetwork, ptrString(w.HostUsers), g.HostIPC, g.HostNetwork, ptrString(g.HostUsers)))
	}
	if ws, gs := sysctlsOf(w), sysctlsOf(g); !slices.Equal(ws, gs) {
		diffs = append(diffs, fmt.Sprintf("sysctls want %v got %v", ws, gs))
	}
	return strings.Join(diffs, "; ")
}

func ownTolerations(ts []corev1.Toleration) []corev1.Toleration {
	var out []corev1.Toleration
	for _, t := range ts {
		if t.TolerationSeconds == nil || !strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			out = append(out, t)
		}
	}
	return out
}

func sysctlsOf(p *corev1.PodSpec) []string {
	var out []string
	if p.SecurityContext != nil {
		for _, s := range p.SecurityContext.Sysctls {
			out = append(out, s.Name+"="+s.Value)
		}
	}
	return out
}

func emptyNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func ptrString(b *bool) string {
	if b == nil {
		return "unset"
	}
	return fmt.Sprint(*b)
}

func toYAML(v any) string {
	data, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(data))
}

// planResult is one line of `sysctl-placement plan -o json`.
type planResult struct {
	Allowed  bool            `json:"allowed"`
	Message  string          `json:"message"`
	Warnings []string        `json:"warnings"`
	Object   json.RawMessage `json:"object"`
}

// planOffline is Plan's answer for the pod in ns, from the plan command (the webhook's
// own code, offline), and the pod it would create.
func planOffline(ctx context.Context, t *testing.T, bin string, ns *corev1.Namespace, pod *corev1.Pod) (planResult, *corev1.Pod) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pod.yaml")
	p := pod.DeepCopy()
	p.APIVersion, p.Kind = "v1", "Pod"
	data, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"plan", "--config", goldenConfig, "-o", "json", "-f", file}
	if ns.Annotations[policyEnabled] == "" {
		args = append(args, "--namespace-annotation", policyEnabled+"=false")
	}
	for k, v := range ns.Annotations {
		args = append(args, "--namespace-annotation", k+"="+v)
	}
	for k, v := range ns.Labels {
		args = append(args, "--namespace-label", k+"="+v)
	}
	stdout, stderr, code := runBinary(ctx, bin, args...)
	if code != 0 && code != 2 { // 2: denied
		t.Fatalf("plan: exit %d\n%s", code, stderr)
	}
	var res planResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("plan -o json: %v\n%s", err, stdout)
	}
	out := pod.DeepCopy()
	if len(res.Object) > 0 {
		out = &corev1.Pod{}
		if err := json.Unmarshal(res.Object, out); err != nil {
			t.Fatal(err)
		}
	}
	return res, out
}

// runBinary runs bin and returns its output and exit status (-1: it did not run).
func runBinary(ctx context.Context, bin string, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		code = -1
		errOut.WriteString(err.Error())
	}
	return out.String(), errOut.String(), code
}

// applyPolicies creates the rendered objects and waits until the API server runs
// them: a dry-run probe pod asking for kernel.shmmax comes back with a nodeSelector.
func applyPolicies(ctx context.Context, t testing.TB, c *cluster.Cluster, p *cluster.Policies) {
	t.Helper()
	if err := c.ApplyPolicies(ctx, p); err != nil {
		t.Fatal(err)
	}
	const probeNS = "policy-probe"
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, probeNS, metav1.GetOptions{}); err != nil {
		optedInNamespace(ctx, t, c, probeNS, nil)
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "1"}}},
			Containers:      []corev1.Container{{Name: "c", Image: "example.com/c"}},
		},
	}
	unplaceable := probe.DeepCopy()
	unplaceable.Spec.SecurityContext.Sysctls[0].Name = "kernel.nothing"
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := c.Client.CoreV1().Pods(probeNS).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil || !placed(got) {
			last = fmt.Errorf("probe not placed: %v", err)
			return false, nil
		}
		_, err = c.Client.CoreV1().Pods(probeNS).Create(ctx, unplaceable, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		last = fmt.Errorf("unplaceable probe admitted")
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("the API server does not run the policies yet: %v (last: %v)", err, last)
	}
}
