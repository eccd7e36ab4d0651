package main

// The hollow kubelet: the real kubelet of k8s.io/kubernetes (pod admission with the
// sysctl allowlist, status manager, node registration and heartbeats, the kubelet API
// server with webhook authentication and authorization) over kubemark's fakes — a fake
// CRI runtime and image service, a fake cAdvisor and a stub container manager — so it
// needs no root, cgroups, mounts or container runtime. The wiring follows
// k8s.io/kubernetes/cmd/kubemark/app/hollow_node.go; kubemark's own command cannot set
// allowed unsafe sysctls, serving certificates or webhook auth, hence this one.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
	_ "unsafe" // for go:linkname

	cadvisorapi "github.com/google/cadvisor/lib/model"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/configz"
	remote "k8s.io/cri-client/pkg"
	fakeremote "k8s.io/cri-client/pkg/fake"
	"k8s.io/klog/v2"
	kubeletconfigv1beta1 "k8s.io/kubelet/config/v1beta1"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	"k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletscheme "k8s.io/kubernetes/pkg/kubelet/apis/config/scheme"
	cadvisortest "k8s.io/kubernetes/pkg/kubelet/cadvisor/testing"
	"k8s.io/kubernetes/pkg/kubelet/cm"
	"k8s.io/kubernetes/pkg/kubemark"
	utilflag "k8s.io/kubernetes/pkg/util/flag"
)

func init() {
	commands["hollow-kubelet"] = func([]string) int { return cli.Run(newHollowKubeletCommand()) }
}

// hollowKubeletOptions are the flags of the hollow-kubelet command.
type hollowKubeletOptions struct {
	kubeconfig           string
	nodeName             string
	nodeIP               string
	address              string
	port                 int
	rootDir              string
	labels               map[string]string
	taints               []corev1.Taint
	allowedUnsafeSysctls []string
	tlsCertFile          string
	tlsKeyFile           string
	maxPods              int
	cpu                  int
	memory               string
	kubeletVersion       string
	kernelVersion        string
}

func (o *hollowKubeletOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the node's identity (system:node:<name> in group system:nodes)")
	fs.StringVar(&o.nodeName, "node-name", "", "the Node's name")
	fs.StringVar(&o.nodeIP, "node-ip", "", "the Node's InternalIP; it must be an address of this machine's interfaces, not loopback, as for any kubelet (default: the machine's default-route address)")
	fs.StringVar(&o.address, "address", "", "address the kubelet API listens on (default: --node-ip, else all)")
	fs.IntVar(&o.port, "port", 10250, "port of the kubelet API (HTTPS: /configz, /healthz, /pods, …)")
	fs.StringVar(&o.rootDir, "root-dir", "", "directory for the kubelet's state (default: a temporary directory, removed at exit)")
	fs.Var(cliflag.NewMapStringString(&o.labels), "node-labels", "labels to register the Node with (k=v,…)")
	fs.Var(utilflag.RegisterWithTaintsVar{Value: &o.taints}, "register-with-taints", "taints to register the Node with (k=v:Effect,…)")
	fs.StringSliceVar(&o.allowedUnsafeSysctls, "allowed-unsafe-sysctls", nil, "the kubelet's allowedUnsafeSysctls: names or prefixes ending in *")
	fs.StringVar(&o.tlsCertFile, "tls-cert-file", "", "serving certificate of the kubelet API (default: a self-signed one, as a kubelet makes)")
	fs.StringVar(&o.tlsKeyFile, "tls-private-key-file", "", "key of --tls-cert-file")
	fs.IntVar(&o.maxPods, "max-pods", 110, "pods the kubelet accepts")
	fs.IntVar(&o.cpu, "cpu", 4, "CPUs the Node reports")
	fs.StringVar(&o.memory, "memory", "16Gi", "memory the Node reports")
	fs.StringVar(&o.kubeletVersion, "kubelet-version", "", "kubelet version the Node reports in status.nodeInfo (default: this build's); admission is always this build's code")
	fs.StringVar(&o.kernelVersion, "kernel-version", "6.8.0", "kernel version the Node reports in status.nodeInfo; the kubelet's built-in safe sysctls still follow the kernel it runs on")
}

func newHollowKubeletCommand() *cobra.Command {
	o := &hollowKubeletOptions{}
	cmd := &cobra.Command{
		Use:   "hollow-kubelet",
		Short: "a real kubelet over a fake container runtime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

// reportedVersion is the GitVersion component-base's version.Get returns, which the
// kubelet puts in status.nodeInfo.kubeletVersion. The hollow kubelet stores another
// version there to report an older pool's kubelet; its exported setter,
// SetDynamicVersion, only accepts the same major.minor.patch. Everything else of the
// build stays v1.37.
//
//go:linkname reportedVersion k8s.io/component-base/version.dynamicGitVersion
var reportedVersion atomic.Value

func (o *hollowKubeletOptions) run(ctx context.Context) error {
	if o.kubeconfig == "" || o.nodeName == "" {
		return errors.New("--kubeconfig and --node-name are required")
	}
	memory, err := resource.ParseQuantity(o.memory)
	if err != nil {
		return fmt.Errorf("--memory: %w", err)
	}
	if o.kubeletVersion != "" {
		if _, err := utilversion.ParseSemantic(o.kubeletVersion); err != nil {
			return fmt.Errorf("--kubelet-version %q is not a version like v1.30.4: %w", o.kubeletVersion, err)
		}
		reportedVersion.Store(o.kubeletVersion)
	}
	if o.rootDir == "" {
		dir, err := os.MkdirTemp("", "hollow-kubelet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.rootDir = dir
	}
	podLogs := filepath.Join(o.rootDir, "pod-logs")
	staticPods := filepath.Join(o.rootDir, "static-pods")
	for _, dir := range []string{podLogs, staticPods} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}

	flags, config := kubemark.GetHollowKubeletConfig(&kubemark.HollowKubeletOptions{
		NodeName:           o.nodeName,
		KubeletPort:        o.port,
		MaxPods:            o.maxPods,
		NodeLabels:         o.labels,
		RegisterWithTaints: o.taints,
	})
	// kubemark made its directories under /tmp; the kubelet's state goes to the root
	// directory instead, which its caller removes.
	if err := os.RemoveAll(flags.RootDirectory); err != nil {
		return err
	}
	flags.RootDirectory, flags.CertDirectory = o.rootDir, o.rootDir
	config.PodLogsDir, config.StaticPodPath = podLogs, staticPods
	flags.NodeIP = o.nodeIP
	config.Address = o.address
	if config.Address == "" {
		config.Address = o.nodeIP
	}
	if config.Address == "" {
		config.Address = "0.0.0.0"
	}
	// One machine runs many kubelets: no fixed healthz port (the kubelet API serves
	// /healthz too), no read-only port.
	config.HealthzPort = 0
	config.ReadOnlyPort = 0
	config.AllowedUnsafeSysctls = o.allowedUnsafeSysctls
	config.TLSCertFile, config.TLSPrivateKeyFile = o.tlsCertFile, o.tlsKeyFile
	// kubemark leaves the kubelet API unauthenticated; a real kubelet checks bearer
	// tokens with a TokenReview and authorizes with a SubjectAccessReview.
	config.Authentication.Anonymous.Enabled = false
	config.Authentication.Webhook.Enabled = true
	config.Authorization.Mode = kubeletconfig.KubeletAuthorizationModeWebhook

	restConfig, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	restConfig.UserAgent = "hollow-kubelet/" + o.nodeName
	restConfig.ContentType = "application/vnd.kubernetes.protobuf"
	restConfig.QPS, restConfig.Burst = 50, 100
	client, err := clientset.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	heartbeatConfig := *restConfig
	heartbeatConfig.Timeout = config.NodeStatusUpdateFrequency.Duration
	heartbeatConfig.QPS = -1
	heartbeatClient, err := clientset.NewForConfig(&heartbeatConfig)
	if err != nil {
		return err
	}

	// fakeremote.GenerateEndpoint would leave a socket in /tmp for every start.
	endpoint := "unix://" + filepath.Join(o.rootDir, "cri.sock")
	fakeRuntime := fakeremote.NewFakeRemoteRuntime()
	if err := fakeRuntime.Start(endpoint); err != nil {
		return fmt.Errorf("fake CRI runtime: %w", err)
	}
	defer fakeRuntime.Stop()
	runtimeService, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint(endpoint).WithConnectionTimeout(15 * time.Second).Build(ctx)
	if err != nil {
		return fmt.Errorf("fake CRI runtime client: %w", err)
	}

	hollow := kubemark.NewHollowKubelet(flags, config, client, heartbeatClient,
		&machine{Fake: cadvisortest.Fake{NodeName: o.nodeName}, cores: o.cpu, memory: uint64(memory.Value()), kernel: o.kernelVersion, bootID: string(uuid.NewUUID())},
		fakeRuntime.ImageService, runtimeService, cm.NewStubContainerManager())
	deps := hollow.KubeletDeps
	// kubemark drops Events; a kubelet records them (SysctlForbidden is one).
	deps.Recorder = nil
	deps.EventClient = client.CoreV1()
	// What the kubelet's own run() adds before RunKubelet and kubemark leaves out: the
	// HTTPS serving certificate, webhook authn/authz, and /configz.
	if deps.TLSOptions, err = kubeletapp.InitializeTLS(ctx, flags, config); err != nil {
		return fmt.Errorf("kubelet TLS: %w", err)
	}
	auth, runAuthCAReload, err := kubeletapp.BuildAuth(types.NodeName(o.nodeName), client, *config)
	if err != nil {
		return fmt.Errorf("kubelet auth: %w", err)
	}
	deps.Auth = auth
	runAuthCAReload(ctx.Done())
	if err := registerConfigz(config); err != nil {
		return err
	}

	klog.InfoS("Starting hollow kubelet", "node", o.nodeName, "address", config.Address, "port", config.Port,
		"allowedUnsafeSysctls", config.AllowedUnsafeSysctls, "rootDir", flags.RootDirectory)
	if err := kubeletapp.RunKubelet(ctx, &options.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *config}, deps); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// registerConfigz serves the configuration at /configz as the kubelet's initConfigz does:
// the v1beta1 form under "kubeletconfig".
func registerConfigz(config *kubeletconfig.KubeletConfiguration) error {
	scheme, _, err := kubeletscheme.NewSchemeAndCodecs()
	if err != nil {
		return err
	}
	versioned := &kubeletconfigv1beta1.KubeletConfiguration{}
	if err := scheme.Convert(config, versioned, nil); err != nil {
		return err
	}
	versioned.GetObjectKind().SetGroupVersionKind(kubeletconfigv1beta1.SchemeGroupVersion.WithKind("KubeletConfiguration"))
	cz, err := configz.New("kubeletconfig")
	if err != nil {
		return err
	}
	return cz.Set(versioned)
}

// machine is kubemark's fake cAdvisor with the node's own capacity, kernel version
// and boot ID (new on every start, as after a reboot).
type machine struct {
	cadvisortest.Fake
	cores  int
	memory uint64
	kernel string
	bootID string
}

// MachineInfo reports the node's CPUs, memory and boot ID.
func (m *machine) MachineInfo(logger klog.Logger) (*cadvisorapi.MachineInfo, error) {
	info, err := m.Fake.MachineInfo(logger)
	if err != nil {
		return nil, err
	}
	info.NumCores, info.MemoryCapacity, info.BootID = m.cores, m.memory, m.bootID
	return info, nil
}

// VersionInfo reports the node's kernel version.
func (m *machine) VersionInfo() (*cadvisorapi.VersionInfo, error) {
	info, err := m.Fake.VersionInfo()
	if err != nil {
		return nil, err
	}
	info.KernelVersion = m.kernel
	return info, nil
}
