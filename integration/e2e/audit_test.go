package e2e

import (
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

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// auditReport is the part of `sysctl-placement audit -o json` the tests read.
type auditReport struct {
	Workloads []struct {
		Namespace   string   `json:"namespace"`
		Kind        string   `json:"kind"`
		Name        string   `json:"name"`
		OptedIn     bool     `json:"optedIn"`
		Status      string   `json:"status"`
		Broken      bool     `json:"broken"`
		Unplaceable bool     `json:"unplaceable"`
		Nodes       []string `json:"nodes"`
		Pods        struct {
			Total, Running, Forbidden, Placed int
		} `json:"pods"`
		Events struct {
			SysctlForbidden int `json:"sysctlForbidden"`
			FailedCreate    int `json:"failedCreate"`
		} `json:"events"`
		Findings []struct {
			Reason string `json:"reason"`
			Detail string `json:"detail"`
		} `json:"findings"`
		Webhook struct {
			Outcome   string   `json:"outcome"`
			Reason    string   `json:"reason"`
			Pools     []string `json:"pools"`
			Unallowed []string `json:"unallowed"`
		} `json:"webhook"`
	} `json:"workloads"`
	Namespaces []struct {
		Name            string   `json:"name"`
		OptedIn         bool     `json:"optedIn"`
		Placeable       int      `json:"placeable"`
		BrokenPlaceable int      `json:"brokenPlaceable"`
		Denied          int      `json:"denied"`
		Refused         int      `json:"refused"`
		Unallowed       []string `json:"unallowed"`
		PodSecurity     string   `json:"podSecurity"`
	} `json:"namespaces"`
	Totals struct {
		Workloads, Broken, Unplaceable, Placed, NotOptedIn int
	} `json:"totals"`
	Listed struct {
		Pods    int     `json:"pods"`
		Seconds float64 `json:"seconds"`
	} `json:"listed"`
}

// auditor is a ServiceAccount bound to exactly deploy/audit's ClusterRole, reached
// through a kubeconfig whose user is an exec credential plugin.
type auditor struct {
	kubeconfig string
	// calls is the file the plugin appends a line to on every run.
	calls string
}

// newAuditor applies deploy/audit unchanged, binds its ClusterRole to a new
// ServiceAccount and writes a kubeconfig whose exec plugin hands out that account's
// token.
func newAuditor(ctx context.Context, t *testing.T, c *cluster.Cluster) auditor {
	t.Helper()
	docs, err := c.Kustomize(ctx, filepath.Join(cluster.RepoRoot(), "deploy", "audit"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatal(err)
		}
		if tm.Kind != "ClusterRole" {
			t.Fatalf("deploy/audit holds a %s; want only the ClusterRole", tm.Kind)
		}
		mustUnmarshal(t, doc, &role)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	const ns, name = "audit-ci", "auditor"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement-audit-ci"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	expiry := int64(time.Hour / time.Second)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := cluster.ExecCredential.Path()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := auditor{kubeconfig: filepath.Join(dir, "auditor.kubeconfig"), calls: filepath.Join(dir, "calls")}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.Config.CAData}
	kc.AuthInfos["auditor"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion: "client.authentication.k8s.io/v1", Command: plugin, Args: []string{tokenFile, a.calls},
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}}
	kc.Contexts["auditor"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "auditor"}
	kc.CurrentContext = "auditor"
	if err := clientcmd.WriteToFile(*kc, a.kubeconfig); err != nil {
		t.Fatal(err)
	}
	return a
}

// run runs the sysctl-placement binary with the auditor's kubeconfig and returns its
// stdout, stderr and exit status.
func (a auditor) run(ctx context.Context, t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin, err := cluster.SysctlPlacement.Path()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "--kubeconfig", a.kubeconfig)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestAuditOfALiveCluster builds a cluster with
// the webhook serving the opted-in namespace team-a, and team-b not opted in, where the
// cluster's own kubelets reject postgres's pods in a SysctlForbidden loop. audit runs as
// a ServiceAccount with exactly deploy/audit's ClusterRole, through an exec credential
// plugin, with pools discovered from the kubelets' /configz.
func TestAuditOfALiveCluster(t *testing.T) {
	env := startPlacementEnv(t, cluster.WebhookOptions{})
	c := env.Cluster
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	teamA := optedInNamespace(ctx, t, c, "team-a", nil)
	cache := postgres(1)
	cache.Name = "cache"
	mq := postgres(1)
	mq.Name = "mq"
	mq.Spec.Template.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "kernel.msgmax", Value: "65536"}, {Name: "net.core.somaxconn", Value: "4096"}}
	teamB := createNamespace(ctx, t, c, "team-b")
	tuned := postgres(1)
	tuned.Name = "tuned"
	tuned.Spec.Template.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "net.ipv4.ip_unprivileged_port_start", Value: "80"}}
	// team-c enforces Pod Security baseline: the API server itself refuses postgres's
	// pods, whatever the webhook does.
	teamC := "team-c"
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: teamC,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.client.AppsV1().Deployments(teamC).Create(ctx, postgres(1), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for ns, deployments := range map[string][]string{teamA: {"cache", "mq"}, teamB: {"postgres", "tuned"}} {
		for _, name := range deployments {
			d := map[string]*appsv1.Deployment{"cache": cache, "mq": mq, "postgres": postgres(2), "tuned": tuned}[name]
			if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	env.waitForRunningPods(ctx, t, teamA, labels.SelectorFromSet(labels.Set{"app": "postgres"}), 1)
	waitFor(ctx, t, "team-b's postgres pods fail with SysctlForbidden again and again (the loop)", func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(teamB).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		failed := 0
		for _, p := range pods.Items {
			if p.Status.Reason == "SysctlForbidden" {
				failed++
			}
		}
		return failed >= 3, nil
	})
	waitFor(ctx, t, "mq's ReplicaSet records the webhook's denial as FailedCreate", func(ctx context.Context) (bool, error) {
		events, err := c.Client.CoreV1().Events(teamA).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", "FailedCreate").String()})
		return err == nil && len(events.Items) > 0, err
	})

	waitFor(ctx, t, "team-c's ReplicaSet records Pod Security's refusal as FailedCreate", func(ctx context.Context) (bool, error) {
		events, err := c.Client.CoreV1().Events(teamC).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", "FailedCreate").String()})
		return err == nil && len(events.Items) > 0, err
	})

	a := newAuditor(ctx, t, c)
	caFile, err := c.KubeletCAFile()
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(t.TempDir(), "discovery.yaml")
	if err := os.WriteFile(configFile, []byte(discoveryConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	poolArgs := []string{"--config", configFile, "--kubelet-ca-file", caFile}

	var report auditReport
	t.Run("audit as the read-only role through an exec plugin reports every workload with sysctls", func(t *testing.T) {
		out, errOut, code := a.run(ctx, t, append([]string{"audit", "-o", "json"}, poolArgs...)...)
		if code != 0 {
			t.Fatalf("audit exit %d\n%s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &report); err != nil {
			t.Fatalf("audit -o json: %v\n%s", err, out)
		}
		if calls, err := os.ReadFile(a.calls); err != nil || len(calls) == 0 {
			t.Errorf("the exec credential plugin never ran (%v)", err)
		}
	})
	got := map[string]int{}
	for i, w := range report.Workloads {
		got[w.Namespace+"/"+w.Kind+"/"+w.Name] = i
	}
	subject := func(t *testing.T, key string) int {
		t.Helper()
		i, ok := got[key]
		if !ok {
			t.Fatalf("audit does not report %s; it reports %v", key, got)
		}
		return i
	}
	t.Run("a Deployment in a SysctlForbidden loop without the webhook is broken, and opting in would place it on ipc", func(t *testing.T) {
		w := report.Workloads[subject(t, "team-b/Deployment/postgres")]
		if w.OptedIn || w.Status != "broken" || w.Pods.Forbidden < 3 || w.Events.SysctlForbidden < 1 || w.Pods.Running != 0 {
			t.Errorf("postgres = %+v", w)
		}
		if w.Webhook.Outcome != "placed" || !reflect.DeepEqual(w.Webhook.Pools, []string{"ipc"}) {
			t.Errorf("postgres webhook plan = %+v, want placed on ipc", w.Webhook)
		}
		for _, n := range w.Nodes {
			if !strings.HasPrefix(n, "general-") {
				t.Errorf("postgres ran on %s; the only pool it tolerates is general", n)
			}
		}
	})
	t.Run("a Deployment the webhook placed is placed and runs on ipc", func(t *testing.T) {
		w := report.Workloads[subject(t, "team-a/Deployment/cache")]
		if !w.OptedIn || w.Status != "placed" || w.Pods.Running != 1 || w.Broken || len(w.Nodes) != 1 || !strings.HasPrefix(w.Nodes[0], "ipc-") {
			t.Errorf("cache = %+v", w)
		}
	})
	t.Run("a Deployment no pool can run is unplaceable, and broken by its FailedCreate churn", func(t *testing.T) {
		w := report.Workloads[subject(t, "team-a/Deployment/mq")]
		if !w.Unplaceable || !w.Broken || w.Webhook.Outcome != "denied" || w.Events.FailedCreate < 1 || w.Pods.Total != 0 {
			t.Errorf("mq = %+v", w)
		}
	})
	t.Run("a Deployment asking only for a safe sysctl is fine where it is", func(t *testing.T) {
		w := report.Workloads[subject(t, "team-b/Deployment/tuned")]
		if w.Status != "ok" || w.Broken || w.Unplaceable || w.Pods.Running != 1 {
			t.Errorf("tuned = %+v", w)
		}
	})
	t.Run("a Deployment its namespace's Pod Security level refuses is broken, with the finding and the namespace summary", func(t *testing.T) {
		w := report.Workloads[subject(t, "team-c/Deployment/postgres")]
		if !w.Broken || w.Unplaceable || w.Events.FailedCreate < 1 || len(w.Findings) != 1 || w.Findings[0].Reason != "PodSecurity" ||
			!strings.Contains(w.Findings[0].Detail, "enforce baseline:latest: forbidden sysctls kernel.shmmax, kernel.sem") {
			t.Errorf("team-c postgres = %+v", w)
		}
		for _, ns := range report.Namespaces {
			if ns.Name == teamC && (ns.Placeable != 0 || ns.Refused != 1 ||
				ns.PodSecurity != "namespace team-c enforces Pod Security baseline:latest: 1 workload with unsafe sysctls can never run there") {
				t.Errorf("team-c = %+v", ns)
			}
		}
	})
	t.Run("the namespace summary says what opting team-b in would change", func(t *testing.T) {
		for _, ns := range report.Namespaces {
			if ns.Name == teamB && (ns.OptedIn || ns.Placeable != 2 || ns.BrokenPlaceable != 1 || ns.Denied != 0) {
				t.Errorf("team-b = %+v", ns)
			}
		}
		if report.Totals.Broken != 3 || report.Totals.Unplaceable != 1 || report.Totals.Placed != 1 || report.Totals.NotOptedIn != 3 {
			t.Errorf("totals = %+v", report.Totals)
		}
	})
	t.Run("the table says it in words", func(t *testing.T) {
		out, errOut, code := a.run(ctx, t, append([]string{"audit"}, poolArgs...)...)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		t.Logf("audit:\n%s", out)
		for _, want := range []string{"opt namespace team-b in → 2 workload(s) placeable (1 broken today)", "would be unchanged (SafeSysctlsOnly)", "team-a     Deployment/mq"} {
			if !strings.Contains(out, want) {
				t.Errorf("the table lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("--fail-on unplaceable exits 2 for a CI pipeline, and -n and -l narrow what is audited", func(t *testing.T) {
		_, errOut, code := a.run(ctx, t, append([]string{"audit", "-n", teamA, "--fail-on", "unplaceable", "-o", "json"}, poolArgs...)...)
		if code != 2 || !strings.Contains(errOut, "1 unplaceable") {
			t.Errorf("exit %d, stderr %q; want 2 naming 1 unplaceable", code, errOut)
		}
		out, errOut, code := a.run(ctx, t, append([]string{"audit", "-n", teamB, "-l", "app=postgres", "--fail-on", "unplaceable", "-o", "json"}, poolArgs...)...)
		var narrowed auditReport
		if code != 0 || json.Unmarshal([]byte(out), &narrowed) != nil || narrowed.Totals.Workloads != 2 {
			t.Errorf("exit %d, stderr %q, report %s; want team-b's two workloads and no unplaceable", code, errOut, out)
		}
	})
	t.Run("pools through the exec plugin reads the kubelets' /configz", func(t *testing.T) {
		out, errOut, code := a.run(ctx, t, append([]string{"pools", "-o", "json"}, poolArgs...)...)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		var pools []discoveredPool
		if err := json.Unmarshal([]byte(out), &pools); err != nil {
			t.Fatal(err)
		}
		for _, p := range pools {
			if p.Name == "ipc" && (p.Source != "configz" || !reflect.DeepEqual(p.AllowedUnsafeSysctls, []string{"kernel.msg*", "kernel.sem", "kernel.shm*"}) || len(p.Problems) != 0) {
				t.Errorf("ipc = %+v; want the allowlist read from /configz with the plugin's token", p)
			}
		}
		if len(pools) != 3 {
			t.Errorf("want the three pools, got %+v", pools)
		}
	})
	baseConfig := filepath.Join(cluster.RepoRoot(), "deploy", "base", "placement-config.yaml")
	t.Run("step 0: pools --config on the shipped base config shows that its sample pools match no node", func(t *testing.T) {
		out, errOut, code := a.run(ctx, t, "pools", "--config", baseConfig, "-o", "json")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		var pools []discoveredPool
		if err := json.Unmarshal([]byte(out), &pools); err != nil {
			t.Fatal(err)
		}
		if len(pools) != 3 {
			t.Fatalf("want the three sample pools and no discovered one, got %+v", pools)
		}
		for _, p := range pools {
			if p.Source != "config" || p.Nodes != 0 || len(p.Problems) != 1 || p.Problems[0].Kind != "NoMatchingNodes" {
				t.Errorf("sample pool %s = %+v; want 0 nodes and NoMatchingNodes", p.Name, p)
			}
		}
	})
	t.Run("serve without discovery reports the sample pools at 0 nodes, logged once", func(t *testing.T) {
		wh, err := c.StartWebhook(ctx, cluster.WebhookOptions{Name: "samples", ConfigFile: baseConfig, AsServiceAccount: true})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = wh.Terminate(30 * time.Second) }()
		metricEquals(ctx, t, wh, `sysctl_placement_pool_nodes{pool="db-ipc"}`, "0")
		metricEquals(ctx, t, wh, `sysctl_placement_discovery_problems{kind="NoMatchingNodes"}`, "3")
		log, err := os.ReadFile(wh.LogFile)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(log), "nodeSelector cloud.google.com/gke-nodepool=db-ipc matches no node"); n != 1 {
			t.Errorf("the db-ipc pool matching no node was logged %d times, want once:\n%s", n, log)
		}
	})
	t.Run("as a kubectl plugin, kubectl sysctl-placement runs plan and completes its commands", func(t *testing.T) {
		bin, err := cluster.SysctlPlacement.Path()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.Symlink(bin, filepath.Join(dir, "kubectl-sysctl_placement")); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), "sysctl-placement", "plan", "-f", filepath.Join(cluster.RepoRoot(), "deploy", "examples", "postgres-deployment.yaml"))
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "pods placed") {
			t.Errorf("kubectl sysctl-placement plan: %v\n%s", err, out)
		}
		cmd = exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), "sysctl-placement", "audit", "--help")
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err = cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "kubectl sysctl-placement audit") {
			t.Errorf("kubectl sysctl-placement audit --help: %v\n%s", err, out)
		}
		// kubectl completes a plugin's words through kubectl_complete-<plugin>.
		if err := os.Symlink(bin, filepath.Join(dir, "kubectl_complete-sysctl_placement")); err != nil {
			t.Fatal(err)
		}
		cmd = exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), "__complete", "sysctl-placement", "au")
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err = cmd.Output()
		if err != nil || !strings.HasPrefix(string(out), "audit\t") {
			t.Errorf("kubectl __complete sysctl-placement au: %v\n%s", err, out)
		}
	})
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, cond); err != nil {
		t.Fatalf("waiting until %s: %v", what, err)
	}
}
