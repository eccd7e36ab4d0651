// Package audit is the engine of `sysctl-placement audit`: it lists a live cluster's
// namespaces, nodes, pods, workloads and sysctl Events (collect.go, read-only and
// paginated), decides for every workload and bare pod that asks for sysctls where its
// pods run, whether their kubelets allow them, how often they fail, and what the
// webhook would do (build.go groups, plan.go plans, checks.go adds findings,
// verdicts.go decides and sums up), and prints the report (table.go, or JSON and
// YAML). The verdicts are a pure function of the listed objects, so they are tested
// without a cluster.
package audit

import (
	"context"
	"io"

	"k8s.io/client-go/kubernetes"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// Config says what to audit and with which pools.
type Config struct {
	// Client lists what the audit reads (deploy/audit/clusterrole.yaml grants it).
	Client kubernetes.Interface
	// Placement is the pool table the webhook plans with; Pools are its pools with
	// their node counts and problems, as `pools` shows them.
	Placement *scheduling.Compiled
	Pools     []discovery.PoolStatus
	// Namespace, when set, audits only that namespace; Selector only the pods and
	// workloads its labels match.
	Namespace string
	Selector  string
	// PageSize is the objects per list request (Limit/Continue).
	PageSize int64
	// Progress gets a line every few thousand objects of one kind listed.
	Progress io.Writer
}

// Collect lists the cluster and decides every verdict of the report; Listed.Seconds
// is left for the caller, who knows when the audit started.
func Collect(ctx context.Context, cfg Config) (*Report, error) {
	c := collector{client: cfg.Client, pageSize: cfg.PageSize, progress: cfg.Progress, namespace: cfg.Namespace, selector: cfg.Selector}
	in, err := c.collect(ctx)
	if err != nil {
		return nil, err
	}
	in.config, in.pools = cfg.Placement, cfg.Pools
	r := build(in)
	return &r, nil
}
