package cluster

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
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

// PoolSpec describes a node pool: its nodes and what their kubelets allow.
type PoolSpec struct {
	// Name is the pool's name and the value of its nodes' PoolLabel.
	Name string
	// Nodes is how many nodes the pool has; they are named <Name>-1, <Name>-2, …
	Nodes int
	// Labels are extra node labels. The kubelet adds PoolLabel=<Name> and the
	// well-known kubernetes.io/hostname, os and arch labels.
	Labels map[string]string
	// Taints are registered by every node of the pool (--register-with-taints).
	Taints []corev1.Taint
	// AllowedUnsafeSysctls is the kubelets' --allowed-unsafe-sysctls: exact names or
	// prefixes ending in "*". Patterns that are not namespaced make the kubelets refuse
	// to start, and AddPool fail with their error.
	AllowedUnsafeSysctls []string
	// KubeletVersion is what the kubelets report in status.nodeInfo. They run the
	// v1.37.2 kubelet code this module is built with. Default DefaultKubeletVersion.
	KubeletVersion string
	// KernelVersion is what the kubelets report in status.nodeInfo (webhook discovery
	// derives the safe sysctls from it). The kubelets' own built-in safe sysctls
	// follow the kernel of the machine they run on. Default DefaultKernelVersion.
	KernelVersion string
	// NodeAllowedUnsafeSysctls overrides AllowedUnsafeSysctls for single nodes, by
	// name: a node whose kubelet disagrees with its pool's.
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

// AddPools starts a hollow kubelet for each node of the pools (see kubelet.go) and
// returns once every node is Ready and schedulable. The kubelets start together, so
// adding the pools in one call is quicker than one by one.
func (c *Cluster) AddPools(ctx context.Context, specs ...PoolSpec) ([]*Pool, error) {
	var pools []*Pool
	var started []*kubelet
	for _, spec := range specs {
		pool, kubelets, err := c.startPool(spec)
		started = append(started, kubelets...)
		if err != nil {
			return nil, err
		}
		pools = append(pools, pool)
	}
	if err := c.waitForNodes(ctx, started, nil); err != nil {
		return nil, err
	}
	return pools, nil
}

// AddPool adds one pool; see AddPools.
func (c *Cluster) AddPool(ctx context.Context, spec PoolSpec) (*Pool, error) {
	pools, err := c.AddPools(ctx, spec)
	if err != nil {
		return nil, err
	}
	return pools[0], nil
}

func (c *Cluster) startPool(spec PoolSpec) (*Pool, []*kubelet, error) {
	spec.defaults()
	if spec.Name == "" || spec.Nodes < 1 {
		return nil, nil, fmt.Errorf("pool %q: a pool needs a name and at least one node", spec.Name)
	}
	pool := &Pool{Spec: spec}
	var started []*kubelet
	for i := 1; i <= spec.Nodes; i++ {
		name := fmt.Sprintf("%s-%d", spec.Name, i)
		pool.NodeNames = append(pool.NodeNames, name)
		allowed := spec.AllowedUnsafeSysctls
		if own, ok := spec.NodeAllowedUnsafeSysctls[name]; ok {
			allowed = own
		}
		k, err := c.startKubelet(pool, name, allowed)
		if k != nil {
			c.mu.Lock()
			stopped := c.stopped
			c.kubelets = append(c.kubelets, k)
			c.mu.Unlock()
			started = append(started, k)
			if stopped {
				k.stop()
				return nil, started, fmt.Errorf("pool %q: the cluster is stopped", spec.Name)
			}
		}
		if err != nil {
			return nil, started, fmt.Errorf("pool %q: node %s: %w", spec.Name, name, err)
		}
	}
	return pool, started, nil
}

func (s *PoolSpec) defaults() {
	if s.KubeletVersion == "" {
		s.KubeletVersion = DefaultKubeletVersion
	}
	if s.KernelVersion == "" {
		s.KernelVersion = DefaultKernelVersion
	}
}
