package cluster

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// PoolLabel is the node label that names a node's pool: every node AddPool creates
// carries PoolLabel=<pool name>, so a pool's node selector is {PoolLabel: name}.
const PoolLabel = "sysctl-placement.io/pool"

// Defaults for a PoolSpec that leaves the versions empty: a v1.37.2 kubelet on a
// modern kernel, whose safe sysctl list has every entry.
const (
	DefaultKubeletVersion = "v1.37.2"
	DefaultKernelVersion  = "6.8.0"
)

// PoolSpec describes a simulated node pool: its nodes and what their kubelets allow.
type PoolSpec struct {
	// Name is the pool's name and the value of its nodes' PoolLabel.
	Name string
	// Nodes is how many nodes the pool has; they are named <Name>-1, <Name>-2, …
	Nodes int
	// Labels are extra node labels. PoolLabel and kubernetes.io/hostname are added.
	Labels map[string]string
	// Taints are put on every node of the pool.
	Taints []corev1.Taint
	// AllowedUnsafeSysctls is the kubelets' --allowed-unsafe-sysctls: exact names or
	// prefixes ending in "*". Patterns that are not namespaced make AddPool fail, as
	// they make a kubelet refuse to start.
	AllowedUnsafeSysctls []string
	// KubeletVersion is reported in status.nodeInfo. Admission always runs the
	// v1.37.2 kubelet code this module is built with. Default DefaultKubeletVersion.
	KubeletVersion string
	// KernelVersion is reported in status.nodeInfo and decides, as on a real node,
	// which built-in safe sysctls the kubelet allows. Default DefaultKernelVersion.
	KernelVersion string
	// ServeConfigz makes each node's simulated kubelet serve /configz over HTTPS on its
	// own 127.0.0.x address, with a certificate from KubeletCAFile, checking callers
	// with TokenReview and SubjectAccessReview (nodes/configz get); the Node's
	// InternalIP and kubelet port point there. See configz.go.
	ServeConfigz bool
	// NodeAllowedUnsafeSysctls overrides, per node name, what that node's /configz
	// reports: a node that disagrees with its pool. Admission stays the pool's.
	NodeAllowedUnsafeSysctls map[string][]string
}

// Pool is a pool that AddPool has created.
type Pool struct {
	// Spec is the pool's spec with defaults filled in.
	Spec PoolSpec
	// NodeNames are the names of the pool's nodes.
	NodeNames []string
}

// NodeSelector selects exactly the pool's nodes.
func (p *Pool) NodeSelector() map[string]string {
	return map[string]string{PoolLabel: p.Spec.Name}
}

// DefaultPools are the three pools the end-to-end tests use:
//
//   - general: 2 untainted nodes whose kubelets allow only the safe sysctls;
//   - ipc: 2 nodes tainted dedicated=ipc:NoSchedule allowing kernel.shm*, kernel.sem
//     and kernel.msg*;
//   - net: 2 nodes tainted dedicated=net:NoSchedule allowing net.core.somaxconn and
//     net.ipv4.tcp_*.
func DefaultPools() []PoolSpec {
	return []PoolSpec{
		{Name: "general", Nodes: 2},
		{
			Name:                 "ipc",
			Nodes:                2,
			Taints:               []corev1.Taint{{Key: "dedicated", Value: "ipc", Effect: corev1.TaintEffectNoSchedule}},
			AllowedUnsafeSysctls: []string{"kernel.shm*", "kernel.sem", "kernel.msg*"},
		},
		{
			Name:                 "net",
			Nodes:                2,
			Taints:               []corev1.Taint{{Key: "dedicated", Value: "net", Effect: corev1.TaintEffectNoSchedule}},
			AllowedUnsafeSysctls: []string{"net.core.somaxconn", "net.ipv4.tcp_*"},
		},
	}
}

// AddPools adds each pool in turn; see AddPool.
func (c *Cluster) AddPools(ctx context.Context, specs ...PoolSpec) ([]*Pool, error) {
	var pools []*Pool
	for _, spec := range specs {
		pool, err := c.AddPool(ctx, spec)
		if err != nil {
			return pools, err
		}
		pools = append(pools, pool)
	}
	return pools, nil
}

// AddPool creates the pool's Ready nodes and starts its simulated kubelet, which
// from then on admits or rejects every pod bound to those nodes. It returns once the
// nodes are schedulable and the kubelet is watching.
func (c *Cluster) AddPool(ctx context.Context, spec PoolSpec) (*Pool, error) {
	spec.defaults()
	if spec.Name == "" || spec.Nodes < 1 {
		return nil, fmt.Errorf("pool %q: a pool needs a name and at least one node", spec.Name)
	}
	pool := &Pool{Spec: spec}
	for i := 1; i <= spec.Nodes; i++ {
		pool.NodeNames = append(pool.NodeNames, fmt.Sprintf("%s-%d", spec.Name, i))
	}

	// Start the kubelet first: like a real one it refuses bad allowlists before any
	// node exists, and it must be watching before pods can be bound to its nodes.
	k, err := startKubelet(ctx, c.Client, pool)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", spec.Name, err)
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		k.stop()
		return nil, fmt.Errorf("pool %q: the cluster is stopped", spec.Name)
	}
	c.kubelets = append(c.kubelets, k)
	c.mu.Unlock()
	if spec.ServeConfigz {
		if err := k.startConfigz(); err != nil {
			return nil, fmt.Errorf("pool %q: %w", spec.Name, err)
		}
	}

	for _, name := range pool.NodeNames {
		if err := c.registerNode(ctx, pool, name); err != nil {
			return nil, fmt.Errorf("pool %q: node %s: %w", spec.Name, name, err)
		}
	}
	return pool, nil
}

func (s *PoolSpec) defaults() {
	if s.KubeletVersion == "" {
		s.KubeletVersion = DefaultKubeletVersion
	}
	if s.KernelVersion == "" {
		s.KernelVersion = DefaultKernelVersion
	}
}

// registerNode does what a kubelet does when it joins: create the Node, post a Ready
// status, and — standing in for the node lifecycle controller, which is not running —
// lift the not-ready taint that the API server's admission put on the new Node.
func (c *Cluster) registerNode(ctx context.Context, pool *Pool, name string) error {
	nodes := c.Client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: nodeLabels(pool, name)},
		Spec:       corev1.NodeSpec{Taints: pool.Spec.Taints},
	}
	node, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	node.Status = nodeStatus(pool)
	c.configzStatus(pool, name, &node.Status)
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("could not post its status: %w", err)
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var kept []corev1.Taint
		for _, t := range node.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(node.Spec.Taints) {
			return nil
		}
		node.Spec.Taints = kept
		_, err = nodes.Update(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

func nodeLabels(pool *Pool, name string) map[string]string {
	labels := maps.Clone(pool.Spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[PoolLabel] = pool.Spec.Name
	labels[corev1.LabelHostname] = name
	labels[corev1.LabelOSStable] = "linux"
	labels[corev1.LabelArchStable] = "amd64"
	return labels
}

func nodeStatus(pool *Pool) corev1.NodeStatus {
	now := metav1.Now()
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	condition := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, message string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: message, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    resources,
		Allocatable: resources,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			condition(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
			condition(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
			condition(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
			condition(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status (simulated)"),
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          pool.Spec.KubeletVersion,
			KernelVersion:           pool.Spec.KernelVersion,
			OSImage:                 "sysctl-placement simulated node",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
			ContainerRuntimeVersion: "simulated://1.0.0",
		},
	}
}
