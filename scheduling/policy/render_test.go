package policy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/component-helpers/node/util/sysctl"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// The rendered policies for scheduling/testdata/config.yaml are kept in
// testdata/golden-config.yaml; regenerate with UPDATE_GOLDEN=1 go test
// ./scheduling/policy/ and review the diff. integration/e2e proves on a real API
// server that they decide as Plan does.
const goldenPolicies = "testdata/golden-config.yaml"

func loadConfig(tb testing.TB, path string) *scheduling.Compiled {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var cfg scheduling.PlacementConfig
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		tb.Fatal(err)
	}
	c, err := scheduling.Compile(&cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func renderYAML(tb testing.TB, c *scheduling.Compiled) []byte {
	tb.Helper()
	objs, err := Render(c, Options{AllowSlowerThanWebhook: true})
	if err != nil {
		tb.Fatal(err)
	}
	var b bytes.Buffer
	for _, obj := range objs.List() {
		data, err := yaml.Marshal(obj)
		if err != nil {
			tb.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.Bytes()
}

// syntheticPools is n pools shaped like the example config's: one label, a taint,
// five patterns of their own.
func syntheticPools(tb testing.TB, n int) *scheduling.Compiled {
	tb.Helper()
	pools := make([]scheduling.Pool, n)
	for i := range pools {
		name := fmt.Sprintf("pool-%d", i)
		pools[i] = scheduling.Pool{
			Name:         name,
			NodeSelector: map[string]string{"sysctl-placement.io/pool": name},
			Taints:       []corev1.Taint{{Key: "dedicated", Value: name, Effect: corev1.TaintEffectNoSchedule}},
			AllowedUnsafeSysctls: []string{"kernel.shm*", "kernel.sem", "kernel.msg*",
				fmt.Sprintf("net.ipv4.conf.eth%d.*", i), fmt.Sprintf("net.ipv4.neigh.eth%d.gc_stale_time", i)},
		}
	}
	c, err := scheduling.CompilePools(scheduling.Policy{}, pools)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func TestRenderIsDeterministic(t *testing.T) {
	c := loadConfig(t, "../testdata/config.yaml")
	first := renderYAML(t, c)
	for range 20 {
		if again := renderYAML(t, c); !bytes.Equal(first, again) {
			t.Fatal("two renderings of one configuration differ; kubectl apply and GitOps would see changes that are not there")
		}
	}
}

func TestRender(t *testing.T) {
	t.Run("the rendered policies of the golden config are up to date", func(t *testing.T) {
		got := renderYAML(t, loadConfig(t, "../testdata/config.yaml"))
		if os.Getenv("UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(goldenPolicies, got, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		want, err := os.ReadFile(goldenPolicies)
		if err != nil {
			t.Fatalf("missing %s (run UPDATE_GOLDEN=1 go test ./scheduling/policy/): %v", goldenPolicies, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale (run UPDATE_GOLDEN=1 go test ./scheduling/policy/ and review the diff)", goldenPolicies)
		}
	})

	t.Run("past the cost bound it refuses and says to use the webhook", func(t *testing.T) {
		if _, err := Render(syntheticPools(t, 1000), Options{AllowSlowerThanWebhook: true}); err == nil || !strings.Contains(err.Error(), "per-call limit") {
			t.Errorf("Render(1000 pools, slower allowed) = %v, want the per-call limit refusal", err)
		}
		for _, n := range []int{10, 50} {
			objs, err := Render(syntheticPools(t, n), Options{})
			if err == nil || !strings.Contains(err.Error(), "use the webhook") {
				t.Fatalf("Render(%d pools) = %v, want a refusal that says to use the webhook", n, err)
			}
			t.Logf("%d pools refused: %s", n, objs.Cost)
		}
	})
}

// Every pool of the golden config has its literal allowlist, selector and taints in
// the policies, and the objects carry the settings the webhook configurations have.
func TestRenderedPoliciesCompileEveryPoolLiterally(t *testing.T) {
	c := loadConfig(t, "../testdata/config.yaml")
	objs, err := Render(c, Options{AllowSlowerThanWebhook: true})
	if err != nil {
		t.Fatal(err)
	}
	m := objs.Mutating.Spec
	if *m.FailurePolicy != admissionregistrationv1.Fail || m.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("mutating policy: failurePolicy %s, reinvocationPolicy %s; want Fail and IfNeeded", *m.FailurePolicy, m.ReinvocationPolicy)
	}
	if m.Mutations[0].PatchType != admissionregistrationv1.PatchTypeJSONPatch {
		t.Errorf("patch type %s, want JSONPatch (ApplyConfiguration cannot add to atomic nodeSelector and tolerations)", m.Mutations[0].PatchType)
	}
	vars := map[string]string{}
	for _, v := range m.Variables {
		vars[v.Name] = v.Expression
	}
	for i, p := range c.Pools() {
		allows := vars[fmt.Sprintf("allows%d", i)]
		for _, s := range p.AllowedUnsafeSysctls {
			s = sysctl.NormalizeName(s)
			want := `"` + s + `"`
			if prefix, ok := strings.CutSuffix(s, "*"); ok {
				want = `startsWith("` + prefix + `")`
			}
			if !strings.Contains(allows, want) {
				t.Errorf("pool %s: allows%d lacks %s: %s", p.Name, i, want, allows)
			}
		}
		if strings.Contains(allows, "*") {
			t.Errorf("pool %s: allows%d matches patterns at run time: %s", p.Name, i, allows)
		}
		for k, v := range p.NodeSelector {
			if !strings.Contains(vars[fmt.Sprintf("selects%d", i)], `"`+k+`"] == "`+v+`"`) {
				t.Errorf("pool %s: selects%d lacks %s=%s", p.Name, i, k, v)
			}
		}
		if !strings.Contains(vars[fmt.Sprintf("candidate%d", i)], `"`+p.Name+`" in variables.poolList`) {
			t.Errorf("pool %s: candidate%d does not honour the namespace's pools annotation", p.Name, i)
		}
	}
	if got := objs.ValidatingBinding.Spec.ValidationActions; len(got) != 1 || got[0] != admissionregistrationv1.Deny {
		t.Errorf("validating binding actions %v, want [Deny]", got)
	}
	if got := objs.WarningsBinding.Spec.ValidationActions; len(got) != 1 || got[0] != admissionregistrationv1.Warn {
		t.Errorf("warnings binding actions %v, want [Warn]", got)
	}
}

// The policies reach the namespaces the webhook does, and no other.
func TestOptInMatchesTheShippedWebhooks(t *testing.T) {
	for _, file := range []string{"mutatingwebhookconfiguration.yaml", "validatingwebhookconfiguration.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../deploy/base", file))
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Webhooks []admissionregistrationv1.ValidatingWebhook `json:"webhooks"`
		}
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(cfg.Webhooks[0].NamespaceSelector, optedIn()) {
			t.Errorf("%s selects %v, the policies %v", file, cfg.Webhooks[0].NamespaceSelector, optedIn())
		}
	}
}

// namespaceOfTable evaluates namespacedNames and namespacedPrefixes as
// namespaceExpr's CEL does.
func namespaceOfTable(name string) sysctl.Namespace {
	if ns, ok := namespacedNames[name]; ok {
		return ns
	}
	for _, p := range namespacedPrefixes {
		if strings.HasPrefix(name, p.prefix) {
			return p.ns
		}
	}
	return sysctl.UnknownNamespace
}

func TestNamespaceTableMatchesComponentHelpers(t *testing.T) {
	names := []string{"kernel.shmfoo", "kernel.hostname", "kernel.msgfoo", "net", "user", "fs.mqueue", "fs.mqueuex", "vm.swappiness", "netx.a", "kernel.semx"}
	for n := range namespacedNames {
		names = append(names, n, n+"x")
	}
	for _, p := range namespacedPrefixes {
		names = append(names, p.prefix+"x", strings.TrimSuffix(p.prefix, "."))
	}
	safe, err := scheduling.SafeSysctls("", "")
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, safe...)
	for _, n := range names {
		want, _, _ := sysctl.GetNamespace(n)
		if got := namespaceOfTable(n); got != want {
			t.Errorf("%s: the policies' table says %q, component-helpers %q", n, got, want)
		}
	}
}

func TestRenderAcceptsTheExampleConfig(t *testing.T) {
	objs, err := Render(loadConfig(t, "../../deploy/examples/placement-config.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("example: %s", objs.Cost)
}

func TestCheckServerVersion(t *testing.T) {
	t.Run("servers without MutatingAdmissionPolicy v1 are refused with the version they need", func(t *testing.T) {
		for version, ok := range map[string]bool{
			"v1.37.2": true, "v1.36.0": true, "v1.36.1-gke.1200": true,
			"v1.35.4": false, "v1.34.0": false, "v1.28.5-eks-1": false,
		} {
			err := CheckServerVersion(version)
			if (err == nil) != ok {
				t.Errorf("CheckServerVersion(%s) = %v, want ok=%v", version, err, ok)
			}
			if err != nil && !strings.Contains(err.Error(), "1.36") {
				t.Errorf("CheckServerVersion(%s) = %v, want it to name 1.36", version, err)
			}
		}
	})
}

func BenchmarkRender(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		c := syntheticPools(b, n)
		b.Run(fmt.Sprintf("%dpools", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Render(c, Options{AllowSlowerThanWebhook: true}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
