package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// chartNamespace is the release namespace of these tests, the one the docs use.
const chartNamespace = "sysctl-placement"

// helmTemplate renders deploy/charts/sysctl-placement with Helm's Go packages (the
// deploy/chartcheck module, which keeps Helm out of this module and the shipped one)
// and returns the objects, in the order Helm installs them.
func helmTemplate(ctx context.Context, t *testing.T, sets ...string) ([]byte, []*unstructured.Unstructured) {
	t.Helper()
	bin, err := cluster.HelmTemplate.Path()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", chartNamespace}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = filepath.Join(cluster.RepoRoot(), "deploy", "chartcheck")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", sets, err, stderr.String())
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, objs
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// find returns the one rendered object of kind and name.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("the chart renders no %s %s", kind, name)
	return nil
}

// containerArgs returns the args of the first container of a Deployment or Job.
func containerArgs(t *testing.T, o *unstructured.Unstructured) []string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if len(containers) == 0 {
		t.Fatalf("%s %s has no container", o.GetKind(), o.GetName())
	}
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	return args
}

// serviceAccountKubeconfig requests a token for a ServiceAccount with the TokenRequest
// API and writes a kubeconfig that authenticates with it: the identity a pod running
// as that account has.
func serviceAccountKubeconfig(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, name string) string {
	t.Helper()
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(time.Hour / time.Second))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.Config.CAData}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa", Namespace: ns}
	kc.CurrentContext = "sa"
	out, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.WorkDir, ns+"-"+name+".kubeconfig")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// chartReplica is `serve` started with exactly the rendered Deployment's arguments, as
// the rendered ServiceAccount, with the files its volumes would hold: what the kubelet
// would run, on loopback.
type chartReplica struct {
	proc       *process.Process
	listenIP   string
	listenPort int
	metricsURL string
	logFile    string
}

func startChartReplica(ctx context.Context, t *testing.T, c *cluster.Cluster, objs []*unstructured.Unstructured) *chartReplica {
	t.Helper()
	bin, err := cluster.SysctlPlacement.Path()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The ConfigMap volume.
	config, _, _ := unstructured.NestedString(find(t, objs, "ConfigMap", "sysctl-placement-config").Object, "data", "config.yaml")
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config", "config.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// The Secret volume, as the certs Job left it.
	secret, err := c.Client.CoreV1().Secrets(chartNamespace).Get(ctx, "sysctl-placement-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the certs Job made no TLS Secret: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(dir, "tls", k), secret.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The webhook port on the machine's own address: EndpointSlices refuse loopback.
	ip := hostIP(t)
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	metrics, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	// The container's arguments, with the mount paths and ports moved to this process.
	paths := map[string]string{
		"/etc/sysctl-placement/config.yaml": filepath.Join(dir, "config", "config.yaml"),
		"/tls/tls.crt":                      filepath.Join(dir, "tls", "tls.crt"),
		"/tls/tls.key":                      filepath.Join(dir, "tls", "tls.key"),
	}
	args := containerArgs(t, find(t, objs, "Deployment", "sysctl-placement"))
	for i, a := range args {
		if p, ok := paths[a]; ok {
			args[i] = p
		}
		if i > 0 && args[i-1] == "--listen" {
			args[i] = listen
		}
		if i > 0 && args[i-1] == "--metrics-listen" {
			args[i] = metrics
		}
	}
	sa, _, _ := unstructured.NestedString(find(t, objs, "Deployment", "sysctl-placement").Object, "spec", "template", "spec", "serviceAccountName")
	args = append(args, "--kubeconfig", serviceAccountKubeconfig(ctx, t, c, chartNamespace, sa), "--development")
	r := &chartReplica{metricsURL: "http://" + metrics, logFile: filepath.Join(c.WorkDir, "chart-serve.log")}
	_, port, _ := net.SplitHostPort(listen)
	r.listenIP = ip
	r.listenPort, _ = strconv.Atoi(port)
	// The chart's own arguments, not cluster.ServeFlags: that they work is the point.
	r.proc = &process.Process{Name: "serve (chart)", Path: bin, Args: args, LogPath: r.logFile, TruncateLog: true,
		Env: []string{"POD_NAMESPACE=" + chartNamespace, "POD_NAME=sysctl-placement-chart-0"}}
	if err := r.proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.proc.Kill()
		if t.Failed() {
			t.Logf("serve log:\n%s", process.Tail(r.logFile, 40))
		}
	})
	if slices.Contains(args, "--metrics-secure") {
		r.metricsURL = "https://" + metrics
	}
	_, err = r.proc.WaitReady(ctx, time.Minute, func(ctx context.Context) error {
		if code, _ := httpGet(ctx, r.metricsURL+"/readyz"); code != 200 {
			return fmt.Errorf("/readyz answered %d", code)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("serve started from the rendered Deployment never became ready: %v\n%s", err, process.Tail(r.logFile, 30))
	}
	return r
}

// hostIP is the machine's first non-loopback IPv4 address.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Fatal("the machine has no non-loopback IPv4 address for an EndpointSlice")
	return ""
}

// routeServiceTo points the chart's Service at a process on this machine: an EndpointSlice
// as the EndpointSlice controller would write for a ready pod. The API server reaches
// webhooks through Service endpoints with --enable-aggregator-routing, so admission
// goes Service → endpoint → serve, verified with the certs Job's caBundle against the
// name <service>.<namespace>.svc, exactly as in a cluster.
func routeServiceTo(ctx context.Context, t *testing.T, c *cluster.Cluster, ip string, port int) {
	t.Helper()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "sysctl-placement-loopback", Namespace: chartNamespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: "sysctl-placement", discoveryv1.LabelManagedBy: "e2e"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := c.Client.DiscoveryV1().EndpointSlices(chartNamespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// serverSideApply applies rendered manifests as `helm upgrade` would leave them: one
// field manager that owns what the chart renders and nothing else (caBundle, patched
// by the certs Job, stays the Job's).
func serverSideApply(ctx context.Context, t *testing.T, c *cluster.Cluster, manifests []byte) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), "--kubeconfig", c.Kubeconfig,
		"apply", "--server-side", "--field-manager=helm", "-f", "-")
	cmd.Stdin = bytes.NewReader(manifests)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl apply --server-side of the rendered chart: %v\n%s", err, out)
	}
	return string(out)
}

// placedPod is a pod asking for kernel.shmmax, which only the chart's default db-ipc
// pool allows.
func placedPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "chart-"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "1"}}},
			Containers:      []corev1.Container{{Name: "c", Image: "i"}},
		},
	}
}

// installChart applies the chart rendered with sets (and namespace.create) server-side,
// runs the rendered certs Job's command as its ServiceAccount, starts serve from the
// rendered Deployment and routes the chart's Service to it.
func installChart(ctx context.Context, t *testing.T, c *cluster.Cluster, sets ...string) ([]*unstructured.Unstructured, *chartReplica) {
	t.Helper()
	manifests, objs := helmTemplate(ctx, t, append([]string{"namespace.create=true"}, sets...)...)
	serverSideApply(ctx, t, c, manifests)
	job := find(t, objs, "Job", "sysctl-placement-certs")
	jobSA, _, _ := unstructured.NestedString(job.Object, "spec", "template", "spec", "serviceAccountName")
	bin, err := cluster.SysctlPlacement.Path()
	if err != nil {
		t.Fatal(err)
	}
	certsArgs := append(containerArgs(t, job), "--kubeconfig", serviceAccountKubeconfig(ctx, t, c, chartNamespace, jobSA))
	if out, err := exec.CommandContext(ctx, bin, certsArgs...).CombinedOutput(); err != nil {
		t.Fatalf("the rendered certs Job failed: %v\n%s", err, out)
	}
	replica := startChartReplica(ctx, t, c, objs)
	routeServiceTo(ctx, t, c, replica.listenIP, replica.listenPort)
	return objs, replica
}

// The chart is what platform teams install: rendered by Helm's code with default
// values, applied to a real API server, it must produce a serving webhook (certs Job,
// ServiceAccount and RBAC, Deployment arguments, Service and webhook configurations
// with the Job's caBundle), and re-applying it with changed values, as `helm upgrade`
// does, must keep the TLS Secret and fail no admission.
func TestHelmChart(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{APIServerFlags: map[string][]string{"enable-aggregator-routing": {"true"}}})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	installChart(ctx, t, c)
	ns := optedInNamespace(ctx, t, c, "chart-users", nil)
	quiet := rest.CopyConfig(c.Config)
	quiet.WarningHandler = rest.NoWarnings{}
	client := kubernetes.NewForConfigOrDie(quiet)
	admit := func(ctx context.Context) (*corev1.Pod, error) {
		return client.CoreV1().Pods(ns).Create(ctx, placedPod(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	}

	t.Run("the API server calls serve through the chart's Service and the pod is placed", func(t *testing.T) {
		var last error
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			pod, err := admit(ctx)
			if err != nil {
				last = err
				return false, nil
			}
			last = fmt.Errorf("admitted without placement: nodeSelector %v", pod.Spec.NodeSelector)
			return pod.Spec.NodeSelector["cloud.google.com/gke-nodepool"] == "db-ipc", nil
		})
		if err != nil {
			t.Fatalf("a pod with kernel.shmmax was never placed on db-ipc through the installed chart: %v", last)
		}
	})

	t.Run("an upgrade with changed values keeps the TLS Secret and fails no admission", func(t *testing.T) {
		before, err := c.Client.CoreV1().Secrets(chartNamespace).Get(ctx, "sysctl-placement-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		upgraded, _ := helmTemplate(ctx, t, "namespace.create=true", "replicas=3", "webhook.timeoutSeconds=5", "resources.limits.memory=512Mi")

		var admitted, failed atomic.Int64
		var failures sync.Map
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := admit(ctx); err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
				} else {
					admitted.Add(1)
				}
			}
		}()
		serverSideApply(ctx, t, c, upgraded)
		// Keep admitting until the API server runs on the upgraded configurations.
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			m, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
			return err == nil && *m.Webhooks[0].TimeoutSeconds == 5 && admitted.Load() > 50, nil
		})
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("the upgraded webhook configuration never took effect (admitted %d): %v", admitted.Load(), err)
		}
		if n := failed.Load(); n > 0 {
			var msgs []string
			failures.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
			t.Errorf("%d of %d admissions failed during the upgrade:\n%s", n, n+admitted.Load(), strings.Join(msgs, "\n"))
		}
		t.Logf("admissions during the upgrade: %d, failed %d", admitted.Load(), failed.Load())

		after, err := c.Client.CoreV1().Secrets(chartNamespace).Get(ctx, "sysctl-placement-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the upgrade lost the TLS Secret: %v", err)
		}
		if after.ResourceVersion != before.ResourceVersion || !bytes.Equal(after.Data["ca.crt"], before.Data["ca.crt"]) {
			t.Errorf("the upgrade changed the TLS Secret (resourceVersion %s → %s)", before.ResourceVersion, after.ResourceVersion)
		}
		for _, kind := range []string{"mutating", "validating"} {
			var bundles [][]byte
			if kind == "mutating" {
				m, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range m.Webhooks {
					bundles = append(bundles, w.ClientConfig.CABundle)
				}
			} else {
				v, err := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range v.Webhooks {
					bundles = append(bundles, w.ClientConfig.CABundle)
				}
			}
			for i, b := range bundles {
				if !bytes.Equal(b, after.Data["ca.crt"]) {
					t.Errorf("after the upgrade the %s webhook %d has lost the certs Job's caBundle", kind, i)
				}
			}
		}
		d, err := c.Client.AppsV1().Deployments(chartNamespace).Get(ctx, "sysctl-placement", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 3 {
			t.Errorf("the upgrade did not take: replicas %d, want 3", *d.Spec.Replicas)
		}
	})
}

// probeClient does what the kubelet's HTTPS probes do: no certificate check, no token.
var probeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a probe, as the kubelet's

// httpGet fetches url as a probe and returns the status code and body; 0 when it
// cannot connect.
func httpGet(ctx context.Context, url string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, ""
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
