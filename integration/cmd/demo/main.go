// Command demo is `go tool task demo`: a local control plane with three node pools,
// the real sysctl-placement webhook, and the unchanged example workloads of
// deploy/examples applied to a namespace that opted in. It prints where each pod went
// and why, leaves a kubeconfig to explore with kubectl, and stops on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// The keys the webhook reads and writes (package scheduling of the main module; this
// module does not import it, so that the control plane's dependency versions stay
// exactly those of Kubernetes v1.37.2).
const (
	labelEnabled        = "sysctl-placement.io/enabled"
	labelPlaced         = "sysctl-placement.io/placed"
	annotationPlacement = "sysctl-placement.io/placement"
)

// audit is the part of the placement annotation the report shows.
type audit struct {
	Pools          []string                  `json:"pools"`
	NodeSelector   map[string]string         `json:"nodeSelector"`
	AffinityTerms  []corev1.NodeSelectorTerm `json:"affinityTerms"`
	Tolerations    []corev1.Toleration       `json:"tolerations"`
	HostNamespaces []struct {
		Field string `json:"field"`
		Mode  string `json:"mode"`
	} `json:"hostNamespaces"`
	DroppedSysctls []string `json:"droppedSysctls"`
}

// demoNamespace is the namespace that opts in.
const demoNamespace = "demo"

// examples are the workloads applied unchanged, in order, and how many pods each
// should end up with Running.
var examples = []struct {
	file string
	pods int
}{
	{"postgres-deployment.yaml", 2},
	{"redis-deployment.yaml", 2},
	{"shm-hostipc-deployment.yaml", 1},
}

func main() {
	o := options{setupTimeout: 3 * time.Minute}
	flag.StringVar(&o.workDir, "work-dir", filepath.Join(cluster.RepoRoot(), "integration", ".demo"), "where the kubeconfig and component logs go")
	exit := flag.Bool("exit", false, "stop after the report instead of waiting for Ctrl-C")
	flag.Parse()
	o.keepRunning = !*exit
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// options are the demo's settings.
type options struct {
	// workDir receives the kubeconfig and the components' logs.
	workDir string
	// keepRunning waits for the end of ctx after the report.
	keepRunning bool
	// setupTimeout bounds everything from the first kubelet to the report. It starts
	// after every binary is built: a cold build takes longer than any setup.
	setupTimeout time.Duration
}

// run builds what the demo runs, starts everything, applies the examples and prints
// the report to out. With keepRunning it then waits until ctx ends.
func run(ctx context.Context, out io.Writer, o options) error {
	if err := os.RemoveAll(o.workDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return err
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }

	// Built before any deadline starts: on a fresh machine this compile alone takes
	// minutes (a no-op when `go tool task` built it already).
	step("building sysctl-placement from this checkout (no deadline: cold, this takes a few minutes)")
	started := time.Now()
	if _, err := cluster.SysctlPlacement.Path(); err != nil {
		return err
	}
	fmt.Fprintf(out, "    built in %s\n", time.Since(started).Round(time.Second))
	// The real node's test image is built here too, outside the deadline.
	_, realNodeErr := cluster.SysctlProbe.Path()

	step("starting etcd, kube-apiserver, kube-controller-manager and kube-scheduler")
	c, err := cluster.Start(ctx, cluster.Options{WorkDir: o.workDir})
	if err != nil {
		return err
	}
	defer c.Stop()
	if realNodeErr == nil {
		realNodeErr = cluster.CheckRealNode(c.BinDir)
	}

	configFile := ""
	var realPool *cluster.Pool
	if realNodeErr == nil {
		step("adding a real node: the v1.37.2 kubelet over containerd and runc, whose containers run on this machine's kernel")
		// A deadline of its own, before the setup's starts: a real node that never
		// gets Ready leaves the setup all its time for the hollow kubelets.
		realCtx, cancelReal := context.WithTimeout(ctx, time.Minute)
		defer cancelReal()
		realPool, realNodeErr = c.AddRealNode(realCtx, realPoolSpec)
	}
	if realNodeErr != nil {
		fmt.Fprintf(out, "    no real node, the demo goes on with hollow kubelets only: %v\n", realNodeErr)
	} else {
		fmt.Fprintf(out, "    pool %-8s 1 real node, taints %s, kubelet allows safe + %s\n", realPool.Spec.Name, taintsString(realPool.Spec.Taints), strings.Join(realPool.Spec.AllowedUnsafeSysctls, ", "))
		if configFile, err = writeConfigWithRealPool(ctx, c, o.workDir, realPool); err != nil {
			return err
		}
	}

	setupCtx, cancel := context.WithTimeout(ctx, o.setupTimeout)
	defer cancel()
	step("adding node pools: a hollow kubelet per node (the real kubelet over a fake container runtime)")
	pools, err := c.AddPools(setupCtx, cluster.DefaultPools()...)
	if err != nil {
		return err
	}
	for _, p := range pools {
		allowed := "only the safe sysctls"
		if len(p.Spec.AllowedUnsafeSysctls) > 0 {
			allowed = "safe + " + strings.Join(p.Spec.AllowedUnsafeSysctls, ", ")
		}
		fmt.Fprintf(out, "    pool %-8s %d nodes, taints %s, kubelets allow %s\n", p.Spec.Name, len(p.NodeNames), taintsString(p.Spec.Taints), allowed)
	}

	step("starting sysctl-placement serve and registering the shipped webhook configurations")
	if _, err := c.Client.CoreV1().Namespaces().Create(setupCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	wh, err := c.StartWebhook(setupCtx, cluster.WebhookOptions{ConfigFile: configFile})
	if err != nil {
		return err
	}
	defer func() { _ = wh.Terminate(30 * time.Second) }()
	if err := c.RegisterWebhook(setupCtx, wh); err != nil {
		return err
	}

	step("opting namespace %q in: kubectl label namespace %s sysctl-placement.io/enabled=true", demoNamespace, demoNamespace)
	if _, err := c.Client.CoreV1().Namespaces().Create(setupCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: demoNamespace, Labels: map[string]string{labelEnabled: "true"},
	}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	want := 0
	for _, ex := range examples {
		path := filepath.Join(cluster.RepoRoot(), "deploy", "examples", ex.file)
		step("kubectl apply -f deploy/examples/%s (unchanged)", ex.file)
		kubectl := exec.CommandContext(setupCtx, filepath.Join(c.BinDir, "kubectl"), "--kubeconfig", c.Kubeconfig, "apply", "-n", demoNamespace, "-f", path)
		output, err := kubectl.CombinedOutput()
		fmt.Fprint(out, indent(string(output)))
		if err != nil {
			return fmt.Errorf("kubectl apply %s: %w", ex.file, err)
		}
		want += ex.pods
	}

	step("waiting for %d pods to be scheduled and admitted by their kubelets", want)
	pods, err := waitForPods(setupCtx, c, want)
	if err != nil {
		return err
	}
	report(setupCtx, out, c, pods)
	if realPool != nil {
		if err := readBackOnTheRealNode(setupCtx, out, c, step); err != nil {
			return err
		}
	}

	fmt.Fprintf(out, "\nExplore it with kubectl:\n  export KUBECONFIG=%s\n  %s get pods -n %s -o wide\n  %s get events -n %s\n  %s get pod -n %s -l %s=true -o jsonpath='{..sysctl-placement\\.io/placement}'\n",
		c.Kubeconfig, filepath.Join(c.BinDir, "kubectl"), demoNamespace, filepath.Join(c.BinDir, "kubectl"), demoNamespace,
		filepath.Join(c.BinDir, "kubectl"), demoNamespace, labelPlaced)
	fmt.Fprintf(out, "The webhook's log: %s; the components' logs are in %s.\n", wh.LogFile, o.workDir)
	if !o.keepRunning {
		return nil
	}
	fmt.Fprintln(out, "\nPress Ctrl-C to stop the cluster.")
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}

// waitForPods waits until n pods of the demo namespace run, and fails fast on a pod
// a kubelet rejected.
func waitForPods(ctx context.Context, c *cluster.Cluster, n int) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		list, err := c.Client.CoreV1().Pods(demoNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		pods = list.Items
		running := 0
		for _, p := range pods {
			if p.Status.Reason == "SysctlForbidden" {
				return false, fmt.Errorf("pod %s was rejected by its kubelet: %s", p.Name, p.Status.Message)
			}
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running >= n, nil
	})
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, err
}

// report prints each pod, its pool, what the webhook changed and why.
func report(ctx context.Context, out io.Writer, c *cluster.Cluster, pods []corev1.Pod) {
	fmt.Fprintln(out, "\nWhere each pod runs, and what sysctl-placement did:")
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tSYSCTLS\tNODE\tPOOL\tPHASE\tADDED BY THE WEBHOOK")
	for _, p := range pods {
		pool := ""
		if node, err := c.Client.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{}); err == nil {
			pool = node.Labels[cluster.PoolLabel]
		}
		// The phase and any reason are what the pod's kubelet reported.
		phase := string(p.Status.Phase)
		if p.Status.Reason != "" {
			phase += " (" + p.Status.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, sysctlNames(p), p.Spec.NodeName, pool, phase, auditSummary(p))
	}
	_ = tw.Flush()

	fmt.Fprintln(out, "\nThe audit annotation sysctl-placement.io/placement of each pod:")
	for _, p := range pods {
		if a := p.Annotations[annotationPlacement]; a != "" {
			fmt.Fprintf(out, "  %s: %s\n", p.Name, a)
		}
	}
	// The audit controller records Events once the pods exist; give it a moment.
	var lines []string
	_ = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		events, err := c.Client.EventsV1().Events(demoNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		lines = lines[:0]
		for _, e := range events.Items {
			if strings.HasPrefix(e.ReportingController, "sysctl-placement") {
				lines = append(lines, fmt.Sprintf("  %s %s %s/%s: %s", e.Type, e.Reason, e.Regarding.Kind, e.Regarding.Name, e.Note))
			}
		}
		return len(lines) >= len(pods), nil
	})
	fmt.Fprintln(out, "\nEvents recorded by sysctl-placement (kubectl get events -n demo):")
	if len(lines) == 0 {
		fmt.Fprintln(out, "  (none yet)")
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
}

func sysctlNames(p corev1.Pod) string {
	if p.Spec.SecurityContext == nil {
		return "-"
	}
	var names []string
	for _, s := range p.Spec.SecurityContext.Sysctls {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

// auditSummary reads the placement annotation back into a line.
func auditSummary(p corev1.Pod) string {
	raw := p.Annotations[annotationPlacement]
	if raw == "" {
		return "nothing"
	}
	var a audit
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		return "unreadable audit: " + err.Error()
	}
	var parts []string
	for k, v := range a.NodeSelector {
		parts = append(parts, "nodeSelector "+k+"="+v)
	}
	if len(a.AffinityTerms) > 0 {
		parts = append(parts, fmt.Sprintf("affinity for pools %s", strings.Join(a.Pools, ",")))
	}
	for _, t := range a.Tolerations {
		parts = append(parts, fmt.Sprintf("toleration %s=%s:%s", t.Key, t.Value, t.Effect))
	}
	for _, h := range a.HostNamespaces {
		parts = append(parts, fmt.Sprintf("%s %s", h.Field, h.Mode))
	}
	if len(a.DroppedSysctls) > 0 {
		parts = append(parts, "dropped "+strings.Join(a.DroppedSysctls, ","))
	}
	return strings.Join(parts, "; ")
}

func taintsString(taints []corev1.Taint) string {
	if len(taints) == 0 {
		return "none"
	}
	var s []string
	for _, t := range taints {
		s = append(s, fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect))
	}
	return strings.Join(s, ",")
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// realPoolSpec is the demo's real node: a pool whose kubelet allows the POSIX message
// queue sysctls, which no hollow pool allows, so only the demo's own probe pod lands
// there (the examples' images are not on this machine; the probe's is imported).
var realPoolSpec = cluster.PoolSpec{
	Name:                 "mqueue",
	Taints:               []corev1.Taint{{Key: "dedicated", Value: "mqueue", Effect: corev1.TaintEffectNoSchedule}},
	AllowedUnsafeSysctls: []string{"fs.mqueue.*"},
}

// writeConfigWithRealPool writes the example PlacementConfig with the real pool
// added, as an admin would describe it, and returns its path.
func writeConfigWithRealPool(ctx context.Context, c *cluster.Cluster, dir string, pool *cluster.Pool) (string, error) {
	data, err := os.ReadFile(filepath.Join(cluster.RepoRoot(), "deploy", "examples", "placement-config.yaml"))
	if err != nil {
		return "", err
	}
	var config map[string]any
	if err := yaml.Unmarshal(data, &config); err != nil {
		return "", err
	}
	node, err := c.Client.CoreV1().Nodes().Get(ctx, pool.NodeNames[0], metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	kernel, _, _ := strings.Cut(node.Status.NodeInfo.KernelVersion, "-")
	pools, _ := config["pools"].([]any)
	config["pools"] = append(pools, map[string]any{
		"name":                 pool.Spec.Name,
		"nodeSelector":         pool.NodeSelector(),
		"taints":               pool.Spec.Taints,
		"allowedUnsafeSysctls": pool.Spec.AllowedUnsafeSysctls,
		"kubeletVersion":       strings.TrimPrefix(node.Status.NodeInfo.KubeletVersion, "v"),
		"kernelVersion":        kernel,
	})
	out, err := yaml.Marshal(config)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "placement-config.yaml")
	return path, os.WriteFile(path, out, 0o600)
}

// readBackOnTheRealNode creates a pod that asks for fs.mqueue.msg_max and knows
// nothing of pools, waits for the webhook to have placed it on the real node, and
// prints the value its container reads from /proc/sys: the check users do by hand.
func readBackOnTheRealNode(ctx context.Context, out io.Writer, c *cluster.Cluster, step func(string, ...any)) error {
	const name, sysctl, value = "mqueue-probe", "fs.mqueue.msg_max", "64"
	step("a pod asking %s=%s, on the real node: its container reads /proc/sys back", sysctl, value)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: sysctl, Value: value}}},
			Containers: []corev1.Container{{
				Name: "probe", Image: cluster.ProbeImage, ImagePullPolicy: corev1.PullNever, Args: []string{sysctl},
				SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](65532), RunAsNonRoot: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false)},
			}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}
	if _, err := c.Client.CoreV1().Pods(demoNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return err
	}
	var got, node string
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(demoNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, fmt.Errorf("pod %s failed on %s: %s %s", name, p.Spec.NodeName, p.Status.Reason, p.Status.Message)
		}
		node = p.Spec.NodeName
		if p.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		logs, err := c.Client.CoreV1().Pods(demoNamespace).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return false, nil
		}
		for line := range strings.Lines(string(logs)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), sysctl+"="); ok {
				got = v
			}
		}
		return got != "", nil
	})
	if err != nil {
		return fmt.Errorf("the probe pod on the real node: %w", err)
	}
	fmt.Fprintf(out, "    inside the container of %s on %s (a real node): %s = %s (asked %s)\n", name, node, sysctl, got, value)
	return nil
}
