package webhook

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
)

// podSecurityEnv serves the example config; namespace "team" opted in with labels.
func podSecurityEnv(t *testing.T, labels map[string]string, obs WorkloadObserver) (testEnv, *Metrics) {
	t.Helper()
	compiled, err := config.Compile(deploy.ExampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	metrics := NewMetrics(prometheus.NewRegistry())
	// Measured, as serve builds it: kubewebhook's measuring wrapper must pass the denial on.
	return newTestEnvFrom(t, Config{
		Config: config.NewStore(compiled),
		Namespaces: namespaces.Static{"team": {Name: "team", Labels: labels,
			Annotations: map[string]string{scheduling.AnnotationEnabled: "true"}}},
		Metrics:   metrics,
		Workloads: obs,
	}, kwhwebhook.NoopMetricsRecorder), metrics
}

func TestDenyForPodSecurity(t *testing.T) {
	t.Run("a pod the enforced level forbids is denied by /mutate with the cause and the fix", func(t *testing.T) {
		env, metrics := podSecurityEnv(t, map[string]string{scheduling.LabelPodSecurityEnforce: "baseline"}, nil)
		resp := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{})))
		if resp.Allowed {
			t.Fatal("the mutating webhook admitted a pod Pod Security baseline refuses; PSA runs before /validate, so only /mutate can explain it")
		}
		if len(resp.Patch) != 0 {
			t.Errorf("a denial carries a patch: %s", resp.Patch)
		}
		if resp.Result == nil {
			t.Fatal("the denial has no status")
		}
		for _, want := range []string{"forbidden by Pod Security", "namespace team enforces baseline:latest", "forbidden sysctls (kernel.shmmax, kernel.sem)", "pod-security.kubernetes.io/enforce=privileged", "sysctl-placement.io/pod-security-exempt=true"} {
			if !strings.Contains(resp.Result.Message, want) {
				t.Errorf("the denial %q does not say %q", resp.Result.Message, want)
			}
		}
		if !containsPrefix(resp.Warnings, "sysctl-placement: Pod Security baseline:latest (enforce) forbids kernel.shmmax") {
			t.Errorf("warnings %q do not name the level and the sysctls", resp.Warnings)
		}
		if got := testutil.ToFloat64(metrics.denials.WithLabelValues(string(scheduling.OutcomeForbidden))); got != 1 {
			t.Errorf("denials{outcome=Forbidden} = %v, want 1", got)
		}
		dry := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{DryRun: true})))
		if dry.Allowed || dry.Result.Message != resp.Result.Message {
			t.Errorf("a dry run got another answer: %+v", dry)
		}
		if got := testutil.ToFloat64(metrics.denials.WithLabelValues(string(scheduling.OutcomeForbidden))); got != 1 {
			t.Errorf("a dry run was counted: denials{outcome=Forbidden} = %v", got)
		}
		vresp := response(t, post(env.validate, reviewJSON(t, postgresPod, reviewOptions{})))
		if vresp.Allowed {
			t.Error("the validating webhook admitted what the mutating one denied")
		}
	})

	t.Run("a pod of a namespace enforcing privileged is placed", func(t *testing.T) {
		env, _ := podSecurityEnv(t, map[string]string{scheduling.LabelPodSecurityEnforce: "privileged"}, nil)
		resp := response(t, post(env.mutate, reviewJSON(t, postgresPod, reviewOptions{})))
		if !resp.Allowed || len(patchOps(t, resp)) == 0 {
			t.Fatalf("a privileged namespace's pod was not placed: %+v", resp)
		}
		if containsPrefix(resp.Warnings, "sysctl-placement: Pod Security") {
			t.Errorf("a privileged namespace got a Pod Security warning: %q", resp.Warnings)
		}
	})

	t.Run("a workload template under baseline is admitted with the warning", func(t *testing.T) {
		env, _ := podSecurityEnv(t, map[string]string{scheduling.LabelPodSecurityEnforce: "baseline"}, nil)
		resp := response(t, post(env.mutate, reviewJSON(t, hostIPCDeployment, reviewOptions{
			Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
		})))
		if !resp.Allowed {
			t.Fatalf("PSA enforces on pods only, so the Deployment must be admitted: %+v", resp.Result)
		}
		if !containsPrefix(resp.Warnings, "sysctl-placement: Pod Security baseline:latest (enforce) forbids kernel.shmmax") ||
			!containsPrefix(resp.Warnings, "sysctl-placement: fix: label the namespace") {
			t.Errorf("the template's warnings %q do not say its pods will be refused and how to fix it", resp.Warnings)
		}
	})

	t.Run("a controller's denied pod is reported with the Forbidden outcome", func(t *testing.T) {
		obs := &recordingObserver{}
		env, _ := podSecurityEnv(t, map[string]string{scheduling.LabelPodSecurityEnforce: "restricted"}, obs)
		if resp := response(t, post(env.mutate, reviewJSON(t, replicaSetPod, reviewOptions{}))); resp.Allowed {
			t.Fatal("admitted")
		}
		if len(obs.denied) != 1 || obs.denied[0].Outcome != scheduling.OutcomeForbidden || obs.denied[0].Owner.Name != "web-7d9f" {
			t.Fatalf("observer got %+v, want one Forbidden denial of ReplicaSet web-7d9f", obs.denied)
		}
	})
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func TestPodSecurityConflicts(t *testing.T) {
	t.Run("opted-in namespaces enforcing baseline or restricted are counted and each logged once", func(t *testing.T) {
		logger, logs := logtest.NewNullLogger()
		c, err := NewPodSecurityConflicts(prometheus.NewRegistry(), logger)
		if err != nil {
			t.Fatal(err)
		}
		optedIn := func(name string, labels map[string]string, ann ...string) scheduling.Namespace {
			a := map[string]string{scheduling.AnnotationEnabled: "true"}
			for i := 0; i+1 < len(ann); i += 2 {
				a[ann[i]] = ann[i+1]
			}
			return scheduling.Namespace{Name: name, Labels: labels, Annotations: a}
		}
		baseline := map[string]string{scheduling.LabelPodSecurityEnforce: "baseline"}
		steps := []struct {
			what  string
			do    func()
			gauge float64
			logs  int
		}{
			{"an opted-in namespace enforcing baseline counts and is logged", func() { c.NamespaceChanged(optedIn("shop", baseline)) }, 1, 1},
			{"a resync of it is not logged again", func() { c.NamespaceChanged(optedIn("shop", baseline)) }, 1, 1},
			{"a namespace enforcing baseline that has not opted in does not count", func() {
				c.NamespaceChanged(scheduling.Namespace{Name: "plain", Labels: baseline})
			}, 1, 1},
			{"a namespace only warning at restricted does not count", func() {
				c.NamespaceChanged(optedIn("warned", map[string]string{scheduling.LabelPodSecurityWarn: "restricted"}))
			}, 1, 1},
			{"a namespace declared exempt does not count", func() {
				c.NamespaceChanged(optedIn("exempt", baseline, scheduling.AnnotationPodSecurityExempt, "true"))
			}, 1, 1},
			{"a second one enforcing restricted counts", func() {
				c.NamespaceChanged(optedIn("data", map[string]string{scheduling.LabelPodSecurityEnforce: "restricted", scheduling.LabelPodSecurityEnforceVersion: "v1.30"}))
			}, 2, 2},
			{"relabelled privileged it stops counting", func() {
				c.NamespaceChanged(optedIn("shop", map[string]string{scheduling.LabelPodSecurityEnforce: "privileged"}))
			}, 1, 2},
			{"deleted it stops counting", func() { c.NamespaceDeleted("data") }, 0, 2},
		}
		for _, s := range steps {
			s.do()
			if got := testutil.ToFloat64(c.gauge); got != s.gauge {
				t.Errorf("%s: gauge = %v, want %v", s.what, got, s.gauge)
			}
			if got := len(logs.AllEntries()); got != s.logs {
				t.Errorf("%s: %d log lines, want %d", s.what, got, s.logs)
			}
		}
		first := logs.AllEntries()[0]
		if first.Level != logrus.WarnLevel || first.Data["namespace"] != "shop" || !strings.Contains(first.Message, "baseline:latest") ||
			!strings.Contains(first.Message, "pod-security.kubernetes.io/enforce=privileged") {
			t.Errorf("log line %q %v does not name the namespace, the level and the fix", first.Message, first.Data)
		}
	})
}
