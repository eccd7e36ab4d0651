package cluster

// A real node is the v1.37.2 kubelet (the kubelet command of local-cluster, exactly
// k8s.io/kubernetes/cmd/kubelet) over a real container runtime: Debian's containerd
// and runc, pod networking through the CNI bridge and loopback plugins. Its containers
// run on this machine's kernel, in their own namespaces, so a sysctl the kubelet
// allows is really set and a test reads it back from inside the container.
//
// Everything it owns lives in a state directory of its own (containerd's root, state
// and sockets, the kubelet's root directory and pod logs, the CNI configuration and
// IP leases), on a bridge and private /24 of its own that no other address routes to:
// pods get no default route, there is no masquerading, and nothing listens beyond
// loopback and this machine's own address.
//
// The machines run a cgroup v1 hierarchy (cgroup2 only beside it, at
// /sys/fs/cgroup/unified), which the v1.37 kubelet refuses unless told otherwise:
// the kubelet runs with failCgroupV1: false and the cgroupfs driver, as containerd
// and runc do (see realNodeKubeletConfig).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	kubeletconfigv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// realKubeletBinary is the real kubelet in the binary directory.
const realKubeletBinary = "kubelet"

// ProbeImage is the image every real node has without a registry: sysctl-probe
// (integration/cmd/sysctl-probe), which prints the sysctls named in its arguments as
// the container sees them and then waits. It is the nodes' pause image too.
const ProbeImage = "sysctl-placement.test/sysctl-probe:1"

// ErrRealNodeUnsupported is returned by AddRealNode when this machine's kernel lacks
// what a container needs; tests skip with its message. A missing package or binary is
// another error: it is fixed by installing it, not by skipping.
var ErrRealNodeUnsupported = errors.New("this machine cannot run a real node")

// realNodeTools are the programs a real node runs, from Debian's containerd, runc and
// containernetworking-plugins packages.
var realNodeTools = []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr"}

// cniPluginDir is where Debian's containernetworking-plugins puts the plugins.
const cniPluginDir = "/usr/lib/cni"

// realNode is a real node's processes and state.
type realNode struct {
	node   string
	dir    string // state directory, removed on stop
	bridge string
	// releaseSubnet gives the bridge's /24 back, once the bridge is gone.
	releaseSubnet func()
	containerd    *process.Process
	kubelet       *kubelet
}

// CheckRealNode reports why this machine cannot run a real node: ErrRealNodeUnsupported
// wrapped with the missing kernel feature, or an error naming the package to install.
func CheckRealNode(binDir string) error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w: containers need Linux, this is %s", ErrRealNodeUnsupported, runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: a container runtime needs root, and these tests run as uid %d", ErrRealNodeUnsupported, os.Geteuid())
	}
	filesystems, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRealNodeUnsupported, err)
	}
	for _, fs := range []string{"overlay", "cgroup"} {
		if !slices.Contains(strings.Fields(string(filesystems)), fs) {
			return fmt.Errorf("%w: the kernel has no %s filesystem (/proc/filesystems)", ErrRealNodeUnsupported, fs)
		}
	}
	for _, ns := range []string{"ipc", "net", "uts", "pid", "mnt"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			return fmt.Errorf("%w: the kernel has no %s namespaces: %v", ErrRealNodeUnsupported, ns, err)
		}
	}
	var missing []string
	for _, tool := range realNodeTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, plugin := range []string{"bridge", "loopback", "host-local"} {
		if _, err := os.Stat(filepath.Join(cniPluginDir, plugin)); err != nil {
			missing = append(missing, filepath.Join(cniPluginDir, plugin))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("a real node needs %s: apt-get install containerd runc containernetworking-plugins", strings.Join(missing, ", "))
	}
	if _, err := os.Stat(filepath.Join(binDir, realKubeletBinary)); err != nil {
		return fmt.Errorf("a real node needs the kubelet in %s: run `go tool task control-plane`: %w", binDir, err)
	}
	return nil
}

// AddRealNode starts a pool of one real node — containerd, then the real kubelet —
// with the pool's labels, taints and allowedUnsafeSysctls, imports ProbeImage into its
// runtime, and returns once the Node is Ready and schedulable. spec.Nodes must be 1;
// KubeletVersion and KernelVersion are not used: the Node reports what it runs.
func (c *Cluster) AddRealNode(ctx context.Context, spec PoolSpec) (*Pool, error) {
	if spec.Nodes == 0 {
		spec.Nodes = 1
	}
	if spec.Name == "" || spec.Nodes != 1 {
		return nil, fmt.Errorf("real pool %q: a real pool needs a name and has exactly one node", spec.Name)
	}
	if err := CheckRealNode(c.BinDir); err != nil {
		return nil, err
	}
	pool := &Pool{Spec: spec, NodeNames: []string{spec.Name + "-1"}}
	rn, err := c.startRealNode(ctx, pool, pool.NodeNames[0])
	if rn != nil {
		c.mu.Lock()
		c.realNodes = append(c.realNodes, rn)
		c.mu.Unlock()
	}
	if err != nil {
		return nil, fmt.Errorf("real pool %q: %w", spec.Name, err)
	}
	if err := c.waitForNodes(ctx, []*kubelet{rn.kubelet}, nil); err != nil {
		return nil, err
	}
	return pool, nil
}

func (c *Cluster) startRealNode(ctx context.Context, pool *Pool, node string) (*realNode, error) {
	// Not in the work directory: containerd's and the kubelet's unix sockets live
	// here, and a socket path may not be longer than 107 bytes.
	dir, err := os.MkdirTemp("", "realnode-")
	if err != nil {
		return nil, err
	}
	rn := &realNode{node: node, dir: dir}
	subnet, bridge, release, err := freeSubnet()
	if err != nil {
		return rn, err
	}
	rn.bridge, rn.releaseSubnet = bridge, release
	ip, err := nodeIP()
	if err != nil {
		return rn, err
	}
	if err := c.ensureServiceProxy(); err != nil {
		return rn, err
	}
	sock := filepath.Join(dir, "containerd.sock")
	if err := writeContainerdConfig(dir, sock, subnet, bridge, []string{c.serviceCIDR, ip + "/32"}); err != nil {
		return rn, err
	}
	rn.containerd = &process.Process{Name: "containerd " + node, Path: "containerd",
		Args: []string{"--config", filepath.Join(dir, "containerd.toml")}, LogPath: filepath.Join(c.WorkDir, "containerd-"+node+".log")}
	if err := rn.containerd.Start(); err != nil {
		return rn, err
	}
	if err := waitForContainerd(ctx, rn.containerd, sock); err != nil {
		return rn, err
	}
	if err := c.importProbeImage(ctx, dir, sock); err != nil {
		return rn, err
	}

	port, err := freePort(ip)
	if err != nil {
		return rn, err
	}
	kubeconfig, err := c.writeKubeconfig("system:node:"+node, "system:nodes")
	if err != nil {
		return rn, err
	}
	certFile, keyFile, err := writeServingCert(dir, node, ip)
	if err != nil {
		return rn, err
	}
	caFile, err := c.KubeletCAFile()
	if err != nil {
		return rn, err
	}
	config := realNodeKubeletConfig(dir, sock, ip, port, certFile, keyFile, caFile, pool.Spec.AllowedUnsafeSysctls)
	configFile := filepath.Join(dir, "kubelet.yaml")
	data, err := yaml.Marshal(config)
	if err != nil {
		return rn, err
	}
	if err := os.WriteFile(configFile, data, 0o600); err != nil {
		return rn, err
	}
	labels, taints := registration(pool)
	rn.kubelet = &kubelet{node: node, pool: pool, ip: ip, port: port, allowed: pool.Spec.AllowedUnsafeSysctls}
	rn.kubelet.proc = &process.Process{Name: "kubelet " + node, Path: filepath.Join(c.BinDir, realKubeletBinary),
		Args: []string{
			"--config=" + configFile,
			"--kubeconfig=" + kubeconfig,
			"--hostname-override=" + node,
			"--node-ip=" + ip,
			"--root-dir=" + filepath.Join(dir, "kubelet"),
			"--cert-dir=" + filepath.Join(dir, "kubelet", "pki"),
			"--node-labels=" + labels,
			"--register-with-taints=" + taints,
			"--v=2",
		},
		LogPath: filepath.Join(c.WorkDir, "kubelet-"+node+".log")}
	return rn, rn.kubelet.proc.Start()
}

// realNodeKubeletConfig is the real node's KubeletConfiguration. What differs from a
// kubeadm node, and why:
//   - failCgroupV1: false — the machines run cgroup v1, which the v1.37 kubelet
//     refuses by default; cgroupDriver cgroupfs, as containerd's runc runs (no systemd);
//   - cgroupsPerQOS: false and enforceNodeAllocatable: [none] — no kubepods hierarchy in
//     the machine's cgroups, whose pods are the runtime's own (containerd puts each
//     container under its sandbox's parent);
//   - every path in the node's state directory, ports picked free, no read-only or
//     healthz port, webhook authentication and authorization as the hollow kubelets
//     have, and the API server's kubelet client certificate (signed by the kubelet CA)
//     accepted, so `kubectl logs` and `exec` work;
//   - no image garbage collection: the test image is imported, never pulled, and
//     nothing may remove it.
func realNodeKubeletConfig(dir, sock, ip string, port int, certFile, keyFile, caFile string, allowed []string) *kubeletconfigv1beta1.KubeletConfiguration {
	config := &kubeletconfigv1beta1.KubeletConfiguration{
		FailCgroupV1:             ptr.To(false),
		CgroupDriver:             "cgroupfs",
		CgroupsPerQOS:            ptr.To(false),
		EnforceNodeAllocatable:   []string{"none"},
		ContainerRuntimeEndpoint: "unix://" + sock,
		ImageServiceEndpoint:     "unix://" + sock,
		Address:                  ip,
		Port:                     int32(port),
		ReadOnlyPort:             0,
		HealthzPort:              ptr.To[int32](0),
		TLSCertFile:              certFile,
		TLSPrivateKeyFile:        keyFile,
		Authentication: kubeletconfigv1beta1.KubeletAuthentication{
			Anonymous: kubeletconfigv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook:   kubeletconfigv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			X509:      kubeletconfigv1beta1.KubeletX509Authentication{ClientCAFile: caFile},
		},
		Authorization:                 kubeletconfigv1beta1.KubeletAuthorization{Mode: kubeletconfigv1beta1.KubeletAuthorizationModeWebhook},
		AllowedUnsafeSysctls:          allowed,
		FailSwapOn:                    ptr.To(false),
		PodLogsDir:                    filepath.Join(dir, "pod-logs"),
		ImageGCHighThresholdPercent:   ptr.To[int32](100),
		ImageGCLowThresholdPercent:    ptr.To[int32](99),
		EvictionHard:                  map[string]string{"memory.available": "100Mi"},
		ResolverConfig:                ptr.To(""),
		SerializeImagePulls:           ptr.To(true),
		NodeStatusReportFrequency:     metav1.Duration{Duration: 10 * time.Second},
		MaxPods:                       20,
		ProtectKernelDefaults:         false,
		LocalStorageCapacityIsolation: ptr.To(false),
	}
	config.Kind, config.APIVersion = "KubeletConfiguration", kubeletconfigv1beta1.SchemeGroupVersion.String()
	return config
}

// writeContainerdConfig writes the node's containerd configuration: its own root,
// state and sockets, no TCP or metrics listener, runc with cgroupfs, ProbeImage as
// the sandbox image, and CNI from its own configuration directory. Pods get a route
// to each of routes through the bridge, and no default route.
func writeContainerdConfig(dir, sock, subnet, bridge string, routes []string) error {
	cniConf := filepath.Join(dir, "cni")
	if err := os.MkdirAll(cniConf, 0o755); err != nil {
		return err
	}
	// No default route: a pod reaches its bridge and routes, nothing beyond; no
	// masquerading.
	var routeList []map[string]string
	for _, r := range routes {
		routeList = append(routeList, map[string]string{"dst": r})
	}
	routesJSON, err := json.Marshal(routeList)
	if err != nil {
		return err
	}
	conflist := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": %s, "dataDir": %q}},
    {"type": "loopback"}
  ]
}
`, bridge, bridge, subnet, routesJSON, filepath.Join(dir, "ipam"))
	if err := os.WriteFile(filepath.Join(cniConf, "10-bridge.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  # The machines drop CAP_SYS_RESOURCE, so no process may lower its oom_score_adj
  # (runc: "failed to update /proc/self/oom_score_adj: Permission denied" for the
  # sandbox's -998): keep every container's at or above containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
`, filepath.Join(dir, "containerd-root"), filepath.Join(dir, "containerd-state"), sock, sock+".ttrpc", ProbeImage, cniPluginDir, cniConf)
	return os.WriteFile(filepath.Join(dir, "containerd.toml"), []byte(config), 0o644)
}

// waitForContainerd waits until containerd's CRI answers Version.
func waitForContainerd(ctx context.Context, proc *process.Process, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if exited, err := proc.Exited(); exited {
			return false, fmt.Errorf("containerd exited: %v\n%s", err, proc.LogTail(15))
		}
		if _, err := os.Stat(sock); err != nil {
			return false, nil
		}
		rs, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 5*time.Second, nil, false)
		if err != nil {
			return false, nil
		}
		_, err = rs.Version(ctx, "v1")
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("containerd did not answer on %s (log %s): %w", sock, proc.LogPath, err)
	}
	return nil
}

// ensureServiceProxy starts the cluster's service proxy with its first real node.
func (c *Cluster) ensureServiceProxy() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("the cluster is stopped")
	}
	if c.serviceProxy != nil {
		return nil
	}
	lb, err := c.startServiceProxy()
	if err != nil {
		return err
	}
	c.serviceProxy = lb
	return nil
}

// ImportImage imports an image archive (`docker save` format, or an OCI layout with
// manifest.json, as `go tool task image` writes) into the runtime of every real node,
// where the kubelet finds it with any pull policy but Always: no registry is needed.
// The image is recorded by name:tag and, as a pull would record it, by name@digest,
// so that a reference pinned by digest (name:tag@digest) is found too; name is the
// image's repository, e.g. ghcr.io/sysctl-placement/sysctl-placement.
func (c *Cluster) ImportImage(ctx context.Context, archive, name string) error {
	c.mu.Lock()
	nodes := slices.Clone(c.realNodes)
	c.mu.Unlock()
	if len(nodes) == 0 {
		return errors.New("no real node to import an image into: AddRealNode first")
	}
	for _, rn := range nodes {
		if err := importImage(ctx, filepath.Join(rn.dir, "containerd.sock"), archive, "--base-name", name, "--digests"); err != nil {
			return fmt.Errorf("node %s: %w", rn.node, err)
		}
	}
	return nil
}

func importImage(ctx context.Context, sock, archive string, flags ...string) error {
	args := append([]string{"--address", sock, "--namespace", "k8s.io", "images", "import"}, flags...)
	out, err := exec.CommandContext(ctx, "ctr", append(args, archive)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %w\n%s", archive, err, out)
	}
	return nil
}

// importProbeImage writes SysctlProbe, built ahead, as an image archive and imports it
// into containerd's k8s.io namespace, where the kubelet finds it.
func (c *Cluster) importProbeImage(ctx context.Context, dir, sock string) error {
	binary, err := SysctlProbe.Path()
	if err != nil {
		return err
	}
	archive := filepath.Join(dir, "sysctl-probe.tar")
	if err := writeImageArchive(archive, ProbeImage, binary, "/sysctl-probe"); err != nil {
		return err
	}
	return importImage(ctx, sock, archive)
}

// freeSubnet picks a /24 in 10.253.0.0/16 that no interface of this machine is on,
// and a bridge name for it; release gives it back.
func freeSubnet() (subnet, bridge string, release func(), err error) {
	subnet, release, err = freeSlash24(253)
	if err != nil {
		return "", "", nil, fmt.Errorf("no free /24 for a real node's pods: %w", err)
	}
	_, cidr, _ := net.ParseCIDR(subnet)
	return subnet, "spnode" + strconv.Itoa(int(cidr.IP.To4()[2])), release, nil
}

// freeSlash24 picks a /24 of 10.<second>.0.0/16 that no interface of this machine is
// on and that no test process holds: the process that takes one holds an flock on a
// file for it (in the system's temporary directory, writable by every user) until
// release, or until it exits, since a bridge or address appears on the machine only
// later and test packages run at once. A /24 whose file this user cannot open is
// skipped, not an error.
func freeSlash24(second int) (string, func(), error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", nil, err
	}
	locks := filepath.Join(os.TempDir(), "sysctl-placement-subnets")
	if err := os.MkdirAll(locks, 0o755); err != nil {
		return "", nil, err
	}
	_ = os.Chmod(locks, 0o777|os.ModeSticky) // fails, harmlessly, for a later user
	handedOut.Lock()
	defer handedOut.Unlock()
	for third := 1; third < 255; third++ {
		_, cidr, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/24", second, third))
		key := -(second<<8 | third)
		if handedOut.ports[key] || slices.ContainsFunc(addrs, func(a net.Addr) bool {
			ipnet, ok := a.(*net.IPNet)
			return ok && cidr.Contains(ipnet.IP)
		}) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(locks, fmt.Sprintf("10.%d.%d.lock", second, third)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			continue
		}
		_ = f.Chmod(0o666) // whatever the umask, so that other users can lock it too
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		handedOut.ports[key] = true
		var once sync.Once
		// The closure keeps f referenced: collected, it would be closed and unlocked.
		release := func() {
			once.Do(func() {
				handedOut.Lock()
				delete(handedOut.ports, key)
				handedOut.Unlock()
				f.Close()
			})
		}
		return cidr.String(), release, nil
	}
	return "", nil, fmt.Errorf("every /24 of 10.%d.0.0/16 is in use", second)
}

// stop stops the kubelet, then every pod sandbox through the CRI (which stops its
// containers and releases its network), then containerd; it kills the runtime shims
// of this node, unmounts what the runtime mounted under the state directory, removes
// it and deletes the bridge.
func (rn *realNode) stop() {
	if rn.kubelet != nil {
		rn.kubelet.stop()
	}
	if rn.containerd != nil {
		sock := filepath.Join(rn.dir, "containerd.sock")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if rs, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 10*time.Second, nil, false); err == nil {
			if sandboxes, err := rs.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{}); err == nil {
				for _, s := range sandboxes {
					_ = rs.StopPodSandbox(ctx, s.Id)
					_ = rs.RemovePodSandbox(ctx, s.Id)
				}
			}
		}
		cancel()
		_ = rn.containerd.Stop(componentGrace)
		killShims(rn.dir)
	}
	unmountUnder(rn.dir)
	_ = os.RemoveAll(rn.dir)
	// containerd puts every container's cgroup under /k8s.io (no parent from the
	// kubelet without cgroupsPerQOS); remove it once no node's container is left.
	if dirs, err := filepath.Glob("/sys/fs/cgroup/*/k8s.io"); err == nil {
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
	if rn.bridge != "" {
		_ = exec.Command("ip", "link", "delete", rn.bridge).Run()
	}
	if rn.releaseSubnet != nil {
		rn.releaseSubnet()
	}
}

// killShims kills the containerd shims serving this node (their command line names
// its state directory): they outlive containerd by design.
func killShims(dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), "containerd-shim") || !strings.Contains(string(cmdline), dir) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}
