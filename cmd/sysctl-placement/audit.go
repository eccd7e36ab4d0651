package main

// `audit` reads a live cluster and reports, for every workload and bare pod that asks
// for sysctls, where its pods run, whether their nodes' kubelets allow them, how often
// they fail with SysctlForbidden, and what the webhook would do. The engine is package
// internal/audit; this file parses the flags, loads the pools and applies --fail-on.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/audit"
)

// auditOptions are the flags of `audit`.
type auditOptions struct {
	pools     poolsFlags
	namespace string
	// webhookNamespace is where the policy backend's status is read (as pools does).
	webhookNamespace string
	selector         string
	output           string
	failOn           []string
	pageSize         int64
	timeout          time.Duration
}

// Values of --fail-on.
const (
	failOnBroken      = "broken"
	failOnUnplaceable = "unplaceable"
)

func newAuditCommand(g *globalOptions, s streams) *cobra.Command {
	var o auditOptions
	cmd := &cobra.Command{
		Use:   "audit [-n NAMESPACE] [-l SELECTOR] [--config FILE] [-o table|json|yaml] [--fail-on broken,unplaceable]",
		Short: "Show what the webhook would change in a live cluster, read-only",
		Long: `Reads Pods, workloads, Nodes, Events, Namespaces and the pools (from --config and/or
discovery, as serve does) and reports, for every workload and bare pod asking for
sysctls: whether its namespace opted in, where its pods run and whether their nodes'
kubelets allow the sysctls, pods failed with SysctlForbidden and the churn counted from
Events, and what the webhook would do. For namespaces that have not opted in it says
what opting in would change. After the table it says, as pools does, whether the policy
backend (serve --admission=policy) is in force and, with discovery, what the replicas'
published result covers (--webhook-namespace). It changes nothing;
deploy/audit/clusterrole.yaml is the exact ClusterRole it needs.

Exit status: 0, or 2 when --fail-on finds what it names, 1 on errors.`,
		Example: `  sysctl-placement audit --config deploy/base/placement-config.yaml
  sysctl-placement audit -n team-a -o json
  sysctl-placement audit --fail-on broken,unplaceable   # in a CI pipeline`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if !levelChanged(cmd) {
				g.logger.Level = logrus.ErrorLevel // pool problems are in the output
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			restConfig, err := g.restConfig(false, "sysctl-placement-audit/"+Version)
			if err != nil {
				return exitError{code: 1, err: err}
			}
			return runAudit(ctx, o, restConfig, g.logger, s)
		},
	}
	fs := cmd.Flags()
	o.pools.addFlags(fs)
	addWebhookNamespaceFlag(fs, &o.webhookNamespace)
	fs.StringVarP(&o.namespace, "namespace", "n", "", "audit only this namespace (default: all namespaces)")
	fs.StringVarP(&o.selector, "selector", "l", "", "audit only pods and workloads with these labels (a label selector, as kubectl's -l)")
	fs.StringVarP(&o.output, "output", "o", "table", "output: table, json or yaml")
	fs.StringSliceVar(&o.failOn, "fail-on", nil, "exit 2 when a workload is broken (pods failing with SysctlForbidden or on nodes that refuse their sysctls) and/or unplaceable (no pool allows its sysctls): broken, unplaceable or both")
	fs.Int64Var(&o.pageSize, "page-size", 500, "objects per list request (Limit/Continue)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long the whole audit may take")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("fail-on", cobra.FixedCompletions([]string{failOnBroken, failOnUnplaceable}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (o *auditOptions) validate() error {
	if o.output != "table" && o.output != "json" && o.output != "yaml" {
		return usageError("-o %q is not supported: use table, json or yaml", o.output)
	}
	for _, f := range o.failOn {
		if f != failOnBroken && f != failOnUnplaceable {
			return usageError("--fail-on %q is not supported: use broken, unplaceable or both (broken,unplaceable)", f)
		}
	}
	if o.pageSize < 1 {
		return usageError("--page-size must be at least 1")
	}
	if o.timeout <= 0 {
		return usageError("--timeout must be positive")
	}
	return o.pools.validate()
}

func runAudit(ctx context.Context, o auditOptions, restConfig *rest.Config, log logrus.FieldLogger, s streams) error {
	start := time.Now()
	pools, client, err := o.pools.load(ctx, restConfig, log)
	if err != nil {
		return err
	}
	report, err := audit.Collect(ctx, audit.Config{
		Client: client, Placement: pools.Store().Current(), Pools: pools.Report(),
		Namespace: o.namespace, Selector: o.selector, PageSize: o.pageSize, Progress: s.errOut,
	})
	if err != nil {
		return exitError{code: 1, err: err}
	}
	report.Listed.Seconds = time.Since(start).Seconds()
	if err := writeAudit(ctx, s.out, o, *report, client, pools.NodeNames()); err != nil {
		return err
	}
	var failed []string
	if slices.Contains(o.failOn, failOnBroken) && report.Totals.Broken > 0 {
		failed = append(failed, fmt.Sprintf("%d broken", report.Totals.Broken))
	}
	if slices.Contains(o.failOn, failOnUnplaceable) && report.Totals.Unplaceable > 0 {
		failed = append(failed, fmt.Sprintf("%d unplaceable", report.Totals.Unplaceable))
	}
	if len(failed) > 0 {
		return exitError{code: 2, err: fmt.Errorf("--fail-on: %s", joinWords(failed))}
	}
	return nil
}

// writeAudit prints report in o.output and, after a table, what the webhook's replicas
// place with as pools says it (writeWebhookStatus): whether the policy backend is in
// force, and the published discovery result when discovery is on. JSON and YAML stay
// the report alone, for the programs that parse them.
func writeAudit(ctx context.Context, w io.Writer, o auditOptions, report audit.Report, client kubernetes.Interface, nodes []string) error {
	if err := audit.Write(w, o.output, report); err != nil {
		return err
	}
	if o.output != "table" {
		return nil
	}
	return writeWebhookStatus(ctx, w, client, o.webhookNamespace, nodes)
}

// joinWords joins "a", "a and b", "a, b and c".
func joinWords(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}
