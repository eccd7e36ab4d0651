// Package cluster starts a real Kubernetes control plane for end-to-end tests and
// demos: etcd and kube-apiserver through controller-runtime's envtest, then
// kube-controller-manager and kube-scheduler as child processes, all built from the
// Kubernetes Go modules by `go tool task control-plane` into integration/bin.
//
// AddPools runs a hollow kubelet process per node — the real kubelet over a fake
// container runtime — that registers its Node, admits or rejects the pods bound to it
// and serves the kubelet API (see kubelet.go).
//
// A typical test:
//
//	c := cluster.StartForTest(t, cluster.Options{})
//	for _, pool := range cluster.DefaultPools() {
//		c.AddPool(ctx, pool)
//	}
//	c.Client.AppsV1().Deployments(ns).Create(ctx, deployment, metav1.CreateOptions{})
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// BinDirEnv names the environment variable that overrides where the control-plane
// binaries are looked for (default: integration/bin next to this package).
const BinDirEnv = "SYSCTL_PLACEMENT_CONTROL_PLANE_BIN"

// requiredBinaries are the executables Start needs in the binary directory; envtest
// insists on kubectl being there too.
var requiredBinaries = []string{"etcd", "kube-apiserver", "kubectl", "kube-controller-manager", "kube-scheduler", kubeletBinary}

// controllers are the kube-controller-manager controllers the tests rely on:
// workloads turn into Pods (Deployment → ReplicaSet → Pod, StatefulSet, DaemonSet,
// Job, CronJob), owners' deletion cascades (garbage collector), namespaces can be
// deleted, and the node lifecycle controller lifts the not-ready taint from a Node
// whose kubelet reports Ready (and marks it unreachable when its kubelet stops).
// Taint-based eviction is off, so a stopped kubelet's pods stay where they are. The
// ServiceAccount admission plugin is disabled by envtest unless Options.InClusterPods
// asks for it, so Pods need no service account and the token controller (and its key)
// is not needed either: the kubelets ask for projected tokens. For pods that talk to the
// API server or serve behind a Service (the webhook as its Deployment's pod on a real
// node), the root CA publisher fills kube-root-ca.crt in every namespace and the
// EndpointSlice controller lists a Service's ready pods, which the API server dials
// itself (--enable-aggregator-routing): there is no kube-proxy.
var controllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"node-lifecycle-controller",
	"endpointslice-controller",
	"root-ca-certificate-publisher-controller",
}

var setControllerRuntimeLogger sync.Once

// ErrBinariesMissing is returned by Start when the control plane has not been built.
var ErrBinariesMissing = errors.New("control-plane binaries are missing: run `go tool task control-plane` in the repository root")

// Options configure Start. The zero value starts a default cluster.
type Options struct {
	// BinDir holds etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
	// kubectl and hollow-kubelet. Default: $SYSCTL_PLACEMENT_CONTROL_PLANE_BIN, else integration/bin.
	BinDir string

	// WorkDir receives the kubeconfig and each component's log. Default: a new
	// temporary directory, removed by Stop.
	WorkDir string

	// APIServerFlags are extra kube-apiserver flags, without the leading dashes,
	// each replacing envtest's value for that flag, e.g.
	// {"admission-control-config-file": {path}}.
	APIServerFlags map[string][]string

	// ControllerManagerFlags and SchedulerFlags are extra flags for those
	// components, e.g. "--v=4".
	ControllerManagerFlags []string
	// SchedulerFlags are extra kube-scheduler flags, e.g. "--v=4".
	SchedulerFlags []string

	// StartTimeout bounds the start of each component. Default: one minute.
	StartTimeout time.Duration

	// InClusterPods turns on the ServiceAccount admission plugin, which envtest turns
	// off: pods get their ServiceAccount's token and the root CA mounted, as in any
	// cluster, and a pod on a real node reaches the API server at the kubernetes
	// Service's address. Off by default: a namespace's default ServiceAccount appears
	// only after its controller runs, and most tests create pods at once.
	InClusterPods bool
}

// Cluster is a running control plane. Its fields are ready to use once Start returns.
type Cluster struct {
	// Config connects to the API server as an admin (group system:masters).
	Config *rest.Config
	// Client is a typed client made from Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of a kubeconfig file for Config, for kubectl and for
	// processes under test.
	Kubeconfig string
	// URL is the API server's address, e.g. https://127.0.0.1:38017.
	URL string
	// WorkDir holds the kubeconfig files and the components' logs.
	WorkDir string
	// BinDir is where the control-plane binaries were taken from.
	BinDir string

	env        *envtest.Environment
	ownWorkDir bool
	components []*process.Process

	mu       sync.Mutex
	stopped  bool
	kubelets []*kubelet
	// realNodes are the nodes AddRealNode started.
	realNodes []*realNode
	// kubeletRoots holds the kubelets' root directories; Stop removes it.
	kubeletRoots string
	// stoppedAPIServer is the command line of the API server StopAPIServer stopped,
	// until StartAPIServer runs it again.
	stoppedAPIServer []string

	// serviceCIDR is the Services' range, a /24 of this cluster's own, and serviceIP
	// the kubernetes Service's address in it (its first), which the API server's
	// serving certificate names.
	serviceCIDR, serviceIP string
	// serviceProxy forwards serviceIP:443 to the API server for pods on real nodes,
	// as kube-proxy would; started with the first real node.
	serviceProxy *LoadBalancer
	// releaseServiceRange gives the Service /24 back; Stop calls it.
	releaseServiceRange func()
}

// Start starts etcd, kube-apiserver, kube-controller-manager and kube-scheduler and
// returns when the scheduler and the controller manager serve requests. The caller
// must call Stop; tests should prefer StartForTest.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	// envtest logs through controller-runtime, which complains with a stack trace
	// when no logger was set; send its messages where Kubernetes' own go: klog.
	setControllerRuntimeLogger.Do(func() { ctrllog.SetLogger(klog.NewKlogr()) })
	opts.defaults()
	if err := checkBinaries(opts.BinDir); err != nil {
		return nil, err
	}
	c := &Cluster{BinDir: opts.BinDir, WorkDir: opts.WorkDir}
	if err := c.start(ctx, opts); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	if c.WorkDir == "" {
		dir, err := os.MkdirTemp("", "sysctl-placement-cluster-")
		if err != nil {
			return err
		}
		c.WorkDir, c.ownWorkDir = dir, true
	} else if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return err
	}

	if err := c.startAPIServer(opts); err != nil {
		return err
	}
	controlKubeconfig, err := c.writeKubeconfig("control-plane", "system:masters")
	if err != nil {
		return err
	}
	caFile, err := c.KubeletCAFile()
	if err != nil {
		return err
	}
	c.components = append(c.components,
		newComponent(c, "kube-controller-manager", append([]string{
			"--kubeconfig=" + controlKubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
			"--controllers=" + strings.Join(controllers, ","),
			"--use-service-account-credentials=false",
			"--root-ca-file=" + caFile,
		}, opts.ControllerManagerFlags...)),
		newComponent(c, "kube-scheduler", append([]string{
			"--kubeconfig=" + controlKubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
		}, opts.SchedulerFlags...)),
	)
	for _, comp := range c.components {
		if err := comp.Start(); err != nil {
			return err
		}
	}
	return c.waitForComponents(ctx, opts.StartTimeout)
}

func (o *Options) defaults() {
	if o.BinDir == "" {
		o.BinDir = os.Getenv(BinDirEnv)
	}
	if o.BinDir == "" {
		o.BinDir = defaultBinDir()
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = time.Minute
	}
}

// defaultBinDir is integration/bin, found from this source file so that tests in
// any package and `go run` from any directory agree on it.
func defaultBinDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("integration", "bin")
	}
	return filepath.Join(filepath.Dir(file), "..", "bin")
}

func checkBinaries(dir string) error {
	var missing []string
	for _, name := range requiredBinaries {
		if info, err := os.Stat(filepath.Join(dir, name)); err != nil || info.IsDir() {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w (%s not found in %s)", ErrBinariesMissing, strings.Join(missing, ", "), dir)
	}
	return nil
}

func (c *Cluster) startAPIServer(opts Options) error {
	etcdLog, err := c.logFile("etcd")
	if err != nil {
		return err
	}
	apiLog, err := c.logFile("kube-apiserver")
	if err != nil {
		return err
	}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory:    opts.BinDir,
		ControlPlaneStartTimeout: opts.StartTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	etcdPath, err := c.diesWithTest(filepath.Join(opts.BinDir, "etcd"))
	if err != nil {
		return err
	}
	apiServerPath, err := c.diesWithTest(filepath.Join(opts.BinDir, "kube-apiserver"))
	if err != nil {
		return err
	}
	c.env.ControlPlane.Etcd = &envtest.Etcd{Path: etcdPath, Out: etcdLog, Err: etcdLog}
	apiServer := c.env.ControlPlane.GetAPIServer()
	apiServer.Path, apiServer.Out, apiServer.Err = apiServerPath, apiLog, apiLog
	// As in a real cluster, kubelets (system:node:<name>) are authorized by the Node
	// authorizer and limited to their own Node and pods by NodeRestriction.
	apiServer.Configure().Set("authorization-mode", "Node,RBAC")
	apiServer.Configure().Set("enable-admission-plugins", "NodeRestriction")
	// The kubelet API's client certificate: real nodes trust it (`kubectl logs`);
	// hollow kubelets check bearer tokens only.
	clientCert, clientKey, err := writeKubeletClientCert(c.WorkDir)
	if err != nil {
		return err
	}
	apiServer.Configure().Set("kubelet-client-certificate", clientCert)
	apiServer.Configure().Set("kubelet-client-key", clientKey)
	// Nodes are reached at their InternalIP: no DNS knows their names.
	apiServer.Configure().Set("kubelet-preferred-address-types", "InternalIP")
	// Admission webhooks behind a Service are dialled at a ready endpoint's address,
	// as the API server does for aggregated APIs with this flag: no kube-proxy runs.
	apiServer.Configure().Set("enable-aggregator-routing", "true")
	if err := c.serveForPods(apiServer); err != nil {
		return err
	}
	if opts.InClusterPods {
		apiServer.Configure().Disable("disable-admission-plugins")
		apiServer.Configure().Set("enable-admission-plugins", "NodeRestriction", "ServiceAccount")
	}
	for flag, values := range opts.APIServerFlags {
		apiServer.Configure().Set(flag, values...)
	}

	cfg, err := c.env.Start()
	if err != nil {
		return fmt.Errorf("could not start etcd and kube-apiserver (logs in %s): %w", c.WorkDir, err)
	}
	c.Config = cfg
	c.URL = cfg.Host
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.WorkDir, "kubeconfig")
	return os.WriteFile(c.Kubeconfig, c.env.KubeConfig, 0o600)
}

// diesWithTest returns a command that runs binary so that the kernel kills it when
// this process dies. envtest starts etcd and kube-apiserver without a way to set
// Pdeathsig, and a test binary that panics or hits -timeout runs no cleanup, which
// would leave both running. setpriv (util-linux, always on Debian) sets it and execs
// the binary, so envtest still signals the real process on Stop. Without setpriv
// the binary is used as it is.
func (c *Cluster) diesWithTest(binary string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return binary, nil
	}
	script := filepath.Join(c.WorkDir, "run-"+filepath.Base(binary))
	content := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", shellQuote(setpriv), shellQuote(binary))
	return script, os.WriteFile(script, []byte(content), 0o755)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeKubeconfig provisions a user with client certificates and writes a
// kubeconfig for it.
func (c *Cluster) writeKubeconfig(user string, groups ...string) (string, error) {
	u, err := c.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("could not provision user %s: %w", user, err)
	}
	data, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.WorkDir, user+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// waitForComponents waits until the controller manager runs its controllers — its
// serviceaccount controller has created the default ServiceAccount — while checking
// that neither child exited. The scheduler serves no port (--secure-port=0); pods
// created before it has synced wait in its queue, so it only has to be running.
func (c *Cluster) waitForComponents(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, comp := range c.components {
			if exited, err := comp.Exited(); exited {
				return false, fmt.Errorf("%s exited during start-up: %v\n%s", comp.Name, err, comp.LogTail(20))
			}
		}
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("control plane did not become ready within %s (logs in %s): %w", timeout, c.WorkDir, err)
	}
	return nil
}

// Stop stops the kubelets, the scheduler, the controller manager, the API
// server and etcd, and removes the work directory if Start created it. It is safe to
// call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	kubelets, realNodes, kubeletRoots, serviceProxy := c.kubelets, c.realNodes, c.kubeletRoots, c.serviceProxy
	c.mu.Unlock()

	var stopping sync.WaitGroup
	for _, k := range kubelets {
		stopping.Go(k.stop)
	}
	for _, rn := range realNodes {
		stopping.Go(rn.stop)
	}
	stopping.Wait()
	var errs []error
	if serviceProxy != nil {
		errs = append(errs, c.stopServiceProxy(serviceProxy))
	}
	for i := len(c.components) - 1; i >= 0; i-- {
		// A component ended by SIGTERM may report a non-zero status; that is no
		// failure of the cluster.
		_ = c.components[i].Stop(componentGrace)
	}
	if c.env != nil {
		errs = append(errs, c.env.Stop())
	}
	if c.releaseServiceRange != nil {
		c.releaseServiceRange()
	}
	if kubeletRoots != "" {
		errs = append(errs, os.RemoveAll(kubeletRoots))
	}
	if c.ownWorkDir {
		errs = append(errs, os.RemoveAll(c.WorkDir))
	}
	return errors.Join(errs...)
}

func (c *Cluster) logFile(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(c.WorkDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// WaitForPod watches the pods of a namespace until one matches, and returns it. The
// description completes "a pod that …" in the error returned when ctx ends first, so
// give ctx a deadline.
func (c *Cluster) WaitForPod(ctx context.Context, namespace, description string, match func(*corev1.Pod) bool) (*corev1.Pod, error) {
	lw := cache.NewListWatchFromClient(c.Client.CoreV1().RESTClient(), "pods", namespace, fields.Everything())
	event, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(e watch.Event) (bool, error) {
		pod, ok := e.Object.(*corev1.Pod)
		return ok && e.Type != watch.Deleted && match(pod), nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for a pod in namespace %s that %s: %w", namespace, description, err)
	}
	return event.Object.(*corev1.Pod), nil
}
