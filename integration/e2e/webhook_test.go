package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// placementEnv is a control plane with the three default pools and the real
// `sysctl-placement serve`, registered with the shipped webhook configurations.
type placementEnv struct {
	*cluster.Cluster
	webhook  *cluster.Webhook
	pools    map[string]*cluster.Pool
	warnings *warningRecorder
	// client records the admission warnings the API server passes back (what kubectl
	// prints as "Warning: …").
	client kubernetes.Interface
}

func startPlacementEnv(t *testing.T, opts cluster.WebhookOptions) *placementEnv {
	t.Helper()
	return startPlacementEnvWithPools(t, opts, func(ctx context.Context, c *cluster.Cluster) ([]*cluster.Pool, error) {
		return c.AddPools(ctx, cluster.DefaultPools()...)
	})
}

// startPlacementEnvWithPools is startPlacementEnv with the pools addPools adds.
func startPlacementEnvWithPools(t *testing.T, opts cluster.WebhookOptions, addPools func(context.Context, *cluster.Cluster) ([]*cluster.Pool, error)) *placementEnv {
	t.Helper()
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// The user flows run with discovery: no static pools, the pools and what their
	// kubelets allow read from the Nodes and each kubelet's /configz, as in a cluster
	// whose admin wrote no pool list.
	pools, err := addPools(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if opts.ConfigFile == "" {
		caFile, err := c.KubeletCAFile()
		if err != nil {
			t.Fatal(err)
		}
		opts.ConfigFile = filepath.Join(t.TempDir(), "discovery.yaml")
		if err := os.WriteFile(opts.ConfigFile, []byte(discoveryConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		opts.ExtraArgs = append(opts.ExtraArgs, "--kubelet-ca-file", caFile)
	}
	env := &placementEnv{Cluster: c, pools: map[string]*cluster.Pool{}, warnings: &warningRecorder{}}
	for _, p := range pools {
		env.pools[p.Spec.Name] = p
	}
	createSystemNamespace(ctx, t, c)
	// As installed: serve runs as the shipped ServiceAccount with exactly the shipped
	// RBAC, so a missing permission fails the suite (cheap: a token and six objects).
	if opts.Kubeconfig == "" {
		opts.AsServiceAccount = true
	}
	env.webhook, err = c.StartWebhook(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.webhook.Terminate(30 * time.Second)
		if t.Failed() {
			t.Logf("webhook log:\n%s", process.Tail(env.webhook.LogFile, 30))
		}
	})
	if err := c.RegisterWebhook(ctx, env.webhook); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.WarningHandler = env.warnings
	env.client = kubernetes.NewForConfigOrDie(cfg)
	return env
}

// createSystemNamespace makes the webhook's own namespace (its leader-election Lease
// lives there), as the deploy manifests do.
func createSystemNamespace(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement"}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// warningRecorder keeps the admission warnings the API server returned.
type warningRecorder struct {
	mu       sync.Mutex
	messages []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, message string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.messages = append(w.messages, message)
}

func (w *warningRecorder) contains(substr string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.messages {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.messages...)
}

// optedInNamespace creates a namespace that opted in, with extra annotations.
func optedInNamespace(ctx context.Context, t testing.TB, c *cluster.Cluster, name string, annotations map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{"sysctl-placement.io/enabled": "true"},
		Annotations: annotations,
	}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// poolOf returns the pool of the node a pod is bound to.
func (e *placementEnv) poolOf(ctx context.Context, t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	node, err := e.Client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return node.Labels[cluster.PoolLabel]
}

// waitForRunningPods waits until n pods matching selector are Running, and fails as
// soon as any is rejected by a kubelet.
func (e *placementEnv) waitForRunningPods(ctx context.Context, t *testing.T, ns string, selector labels.Selector, n int) []corev1.Pod {
	t.Helper()
	var running []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err != nil {
			return false, err
		}
		running = running[:0]
		for _, p := range list.Items {
			if p.Status.Reason == "SysctlForbidden" {
				t.Fatalf("pod %s was rejected by its kubelet on %s: %s", p.Name, p.Spec.NodeName, p.Status.Message)
			}
			if p.Status.Phase == corev1.PodRunning {
				running = append(running, p)
			}
		}
		return len(running) >= n, nil
	})
	if err != nil {
		t.Fatalf("waiting for %d running pods %s in %s: %v (%d running)", n, selector, ns, err, len(running))
	}
	return running
}

func TestWebhook(t *testing.T) {
	t.Run("an unchanged deployment in an opted in namespace runs on the IPC pool", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "shop", nil)

		if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, postgres(3), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods := env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(labels.Set{"app": "postgres"}), 3)
		for _, p := range pods {
			if pool := env.poolOf(ctx, t, &p); pool != "ipc" {
				t.Errorf("pod %s runs in pool %q, want ipc", p.Name, pool)
			}
			if !strings.Contains(p.Annotations["sysctl-placement.io/placement"], `"ipc"`) {
				t.Errorf("pod %s has no placement audit annotation naming the pool: %v", p.Name, p.Annotations)
			}
		}
		// None of the pods ever created for the Deployment was rejected (a rejected pod
		// stays as Failed; its ReplicaSet would have made a replacement).
		all, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Items) != 3 {
			t.Errorf("%d pods exist, want exactly the 3 replicas (a rejected pod would have been replaced)", len(all.Items))
		}
	})

	t.Run("a host IPC deployment is stripped and runs but is rejected with an explanation under flag", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()

		strip := optedInNamespace(ctx, t, env.Cluster, "legacy", nil)
		if _, err := env.client.AppsV1().Deployments(strip).Create(ctx, shmWithHostIPC(), metav1.CreateOptions{}); err != nil {
			t.Fatalf("the API server rejected the Deployment the webhook should have stripped: %v", err)
		}
		if !env.warnings.contains("hostIPC") {
			t.Errorf("no warning told the user hostIPC was changed; warnings: %v", env.warnings.all())
		}
		dep, err := env.Client.AppsV1().Deployments(strip).Get(ctx, "shm-cache", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if dep.Spec.Template.Spec.HostIPC {
			t.Error("the stored Deployment still has hostIPC: true")
		}
		pods := env.waitForRunningPods(ctx, t, strip, labels.SelectorFromSet(labels.Set{"app": "shm-cache"}), 1)
		if pool := env.poolOf(ctx, t, &pods[0]); pool != "ipc" {
			t.Errorf("pod runs in pool %q, want ipc", pool)
		}

		flag := optedInNamespace(ctx, t, env.Cluster, "legacy-flag", map[string]string{"sysctl-placement.io/host-ipc": "flag"})
		_, err = env.client.AppsV1().Deployments(flag).Create(ctx, shmWithHostIPC(), metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "hostIPC") {
			t.Fatalf("under mode flag the API server must reject the clash itself, got %v", err)
		}
		if !env.warnings.contains("rejected by the API server") && !env.warnings.contains("hostIPC: false") {
			t.Errorf("no warning explained why and how to fix it; warnings: %v", env.warnings.all())
		}
	})

	t.Run("a pod no pool allows is rejected and its deployment shows why in failed create", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "mixed", nil)

		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "mixed"},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
					{Name: "kernel.msgmax", Value: "65536"}, {Name: "net.core.somaxconn", Value: "4096"},
				}},
				Containers: []corev1.Container{{Name: "c", Image: "i"}},
			},
		}
		_, err := env.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err == nil {
			t.Fatal("a pod no pool can run was admitted")
		}
		for _, want := range []string{"kernel.msgmax", "net.core.somaxconn", "pool ipc", "pool net", "pool general"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the denial %q does not mention %q", err, want)
			}
		}

		dep := postgres(1)
		dep.Name = "mixed"
		dep.Spec.Template.Spec.SecurityContext.Sysctls = pod.Spec.SecurityContext.Sysctls
		if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the Deployment itself must be accepted (templates are not placed): %v", err)
		}
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			events, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"reason": "FailedCreate"}.String()})
			if err != nil {
				return false, err
			}
			for _, e := range events.Items {
				if e.InvolvedObject.Kind == "ReplicaSet" && strings.Contains(e.Message, "net.core.somaxconn") && strings.Contains(e.Message, "pool ipc") {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("the ReplicaSet's FailedCreate event does not carry the explanation: %v", err)
		}
	})

	t.Run("a pod the user pinned keeps everything of the users and is scheduled correctly", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "pinned", nil)

		userToleration := corev1.Toleration{Key: "example.com/maintenance", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
		userAffinity := corev1.NodeSelectorRequirement{Key: "kubernetes.io/os", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"windows"}}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "pinned", Labels: map[string]string{"app": "pinned"}},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{cluster.PoolLabel: "ipc"},
				Tolerations:  []corev1.Toleration{userToleration},
				Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{userAffinity}}},
				}}},
				SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.sem", Value: "250 32000 100 128"}}},
				Containers:      []corev1.Container{{Name: "c", Image: "i"}},
			},
		}
		created, err := env.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if created.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
			t.Errorf("the user's nodeSelector was changed: %v", created.Spec.NodeSelector)
		}
		if len(created.Spec.Tolerations) < 1 || created.Spec.Tolerations[0] != userToleration {
			t.Errorf("the user's toleration was removed or rewritten: %v", created.Spec.Tolerations)
		}
		terms := created.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) != 1 || len(terms[0].MatchExpressions) < 1 || terms[0].MatchExpressions[0].Key != userAffinity.Key {
			t.Errorf("the user's affinity was changed: %+v", terms)
		}
		pods := env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(labels.Set{"app": "pinned"}), 1)
		if pool := env.poolOf(ctx, t, &pods[0]); pool != "ipc" {
			t.Errorf("the pinned pod runs in pool %q, want ipc", pool)
		}
	})

	t.Run("kubectl create dry run server returns the placed pod", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "dry", nil)

		kubectl := exec.CommandContext(ctx, filepath.Join(env.BinDir, "kubectl"), "--kubeconfig", env.Kubeconfig,
			"create", "--dry-run=server", "-o", "yaml", "-n", ns, "-f", filepath.Join(cluster.RepoRoot(), "deploy", "examples", "postgres-pod.yaml"))
		out, err := kubectl.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl create --dry-run=server: %v\n%s", err, out)
		}
		// kubectl prints the admission warning on stderr, then the pod.
		if !strings.Contains(string(out), "Warning: sysctl-placement: placed on pool ipc") {
			t.Errorf("kubectl did not show the placement warning:\n%s", out)
		}
		yamlStart := strings.Index(string(out), "apiVersion:")
		var pod corev1.Pod
		if yamlStart < 0 || yaml.Unmarshal(out[yamlStart:], &pod) != nil {
			t.Fatalf("no pod in kubectl's output:\n%s", out)
		}
		if pod.Spec.NodeSelector[cluster.PoolLabel] != "ipc" || len(pod.Spec.Tolerations) == 0 {
			t.Errorf("the dry-run pod was not placed: nodeSelector %v tolerations %v", pod.Spec.NodeSelector, pod.Spec.Tolerations)
		}
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 0 {
			t.Errorf("a dry run created %d pods", len(pods.Items))
		}
	})

	t.Run("when the webhook is killed pods without sysctls and namespaces not opted in are unaffected", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		optedIn := optedInNamespace(ctx, t, env.Cluster, "opted-in", nil)
		other := createNamespace(ctx, t, env.Cluster, "not-opted-in")

		if err := env.webhook.Kill(); err != nil {
			t.Fatal(err)
		}
		plain := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "plain-"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		}
		for _, ns := range []string{optedIn, other} {
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, plain, metav1.CreateOptions{}); err != nil {
				t.Errorf("a pod without sysctls in %s was affected by the dead webhook: %v", ns, err)
			}
		}
		withSysctls := postgres(1)
		withSysctls.Name = "unaffected"
		if _, err := env.Client.AppsV1().Deployments(other).Create(ctx, withSysctls, metav1.CreateOptions{}); err != nil {
			t.Errorf("a Deployment in a namespace that did not opt in was affected: %v", err)
		}
		pod := plain.DeepCopy()
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "1"}}}
		if _, err := env.Client.CoreV1().Pods(other).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Errorf("a pod with sysctls in a namespace that did not opt in was affected: %v", err)
		}
		// In the opted-in namespace the same pod fails closed (failurePolicy Fail), so its
		// controller retries instead of looping through SysctlForbidden.
		if _, err := env.Client.CoreV1().Pods(optedIn).Create(ctx, pod, metav1.CreateOptions{}); err == nil {
			t.Error("a pod with sysctls in an opted-in namespace was admitted unplaced while the webhook was down")
		}
	})
}

// shmWithHostIPC is a legacy Deployment that shares the host's IPC namespace and asks
// for kernel.shmmax, a pair the API server rejects.
func shmWithHostIPC() *appsv1.Deployment {
	d := postgres(1)
	d.Name = "shm-cache"
	d.Spec.Selector.MatchLabels = map[string]string{"app": "shm-cache"}
	d.Spec.Template.Labels = map[string]string{"app": "shm-cache"}
	d.Spec.Template.Spec.HostIPC = true
	d.Spec.Template.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "kernel.shmmax", Value: "17179869184"}}
	return d
}
