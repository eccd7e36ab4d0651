package main

// `audit` reads a live cluster and reports, for every workload and bare pod that asks
// for sysctls, where its pods run, whether their nodes' kubelets allow them, how often
// they fail with SysctlForbidden, and what the webhook would do. It only reads: every
// list is paginated (Limit/Continue through client-go's pager) so 50,000 pods never
// need one giant response, and deploy/audit/clusterrole.yaml is all it needs.

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// auditOptions are the flags of `audit`.
type auditOptions struct {
	pools     poolsFlags
	namespace string
	selector  string
	output    string
	failOn    []string
	pageSize  int64
	timeout   time.Duration
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
what opting in would change. It changes nothing; deploy/audit/clusterrole.yaml is the
exact ClusterRole it needs.

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
	return o.pools.discovery.validate()
}

func runAudit(ctx context.Context, o auditOptions, restConfig *rest.Config, log logrus.FieldLogger, s streams) error {
	start := time.Now()
	loaded, err := o.pools.loadLikeServe(ctx, restConfig, log)
	if err != nil {
		return err
	}
	c := auditCollector{client: loaded.client, pageSize: o.pageSize, progress: s.errOut, namespace: o.namespace, selector: o.selector}
	in, err := c.collect(ctx)
	if err != nil {
		return exitError{code: 1, err: err}
	}
	in.config, in.pools = loaded.compiled, loaded.report
	report := buildAudit(in)
	report.Listed.Seconds = time.Since(start).Seconds()
	if err := writeAudit(s.out, o.output, report); err != nil {
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

// auditCollector lists what the audit reads, page by page.
type auditCollector struct {
	client    kubernetes.Interface
	pageSize  int64
	progress  io.Writer
	namespace string
	selector  string
}

// progressEvery is how many objects of one kind are listed between two progress lines
// on stderr, so a small cluster gets none and a big one shows it is moving.
const progressEvery = 2000

// each lists one kind page by page and calls fn for every item.
func (c *auditCollector) each(ctx context.Context, what string, opts metav1.ListOptions, list func(context.Context, metav1.ListOptions) (runtime.Object, error), fn func(runtime.Object)) (int, error) {
	p := pager.New(list)
	p.PageSize = c.pageSize
	n := 0
	err := p.EachListItem(ctx, opts, func(obj runtime.Object) error {
		fn(obj)
		n++
		if n%progressEvery == 0 {
			fmt.Fprintf(c.progress, "audit: listed %d %s\n", n, what)
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("could not list %s (the audit needs list on %s; see deploy/audit/clusterrole.yaml): %w", what, what, err)
	}
	return n, nil
}

// collect lists namespaces, nodes, pods, workloads and the sysctl Events.
func (c *auditCollector) collect(ctx context.Context) (auditInput, error) {
	in := auditInput{namespaces: map[string]*corev1.Namespace{}}
	core, apps, batch := c.client.CoreV1(), c.client.AppsV1(), c.client.BatchV1()
	ns := c.namespace
	sel := metav1.ListOptions{LabelSelector: c.selector}

	var err error
	if ns != "" {
		n, err := core.Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return in, fmt.Errorf("could not read namespace %s: %w", ns, err)
		}
		in.namespaces[n.Name] = n
	} else if _, err = c.each(ctx, "namespaces", metav1.ListOptions{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return core.Namespaces().List(ctx, o)
	}, func(o runtime.Object) {
		n := o.(*corev1.Namespace)
		in.namespaces[n.Name] = n
	}); err != nil {
		return in, err
	}
	if in.Listed.Nodes, err = c.each(ctx, "nodes", metav1.ListOptions{}, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return core.Nodes().List(ctx, o)
	}, func(o runtime.Object) { in.nodes = append(in.nodes, o.(*corev1.Node)) }); err != nil {
		return in, err
	}
	if in.Listed.Pods, err = c.each(ctx, "pods", sel, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return core.Pods(ns).List(ctx, o)
	}, func(o runtime.Object) {
		p := o.(*corev1.Pod)
		if len(scheduling.SysctlNames(p)) > 0 {
			in.pods = append(in.pods, p)
		}
	}); err != nil {
		return in, err
	}

	// Workloads: their templates say what their pods ask for, also when no pod exists
	// (every create denied) or the pods were replaced.
	add := func(kind string, meta metav1.ObjectMeta, tpl *corev1.PodTemplateSpec) {
		in.Listed.Workloads++
		if tpl != nil && len(scheduling.SysctlNames(&corev1.Pod{Spec: tpl.Spec})) > 0 {
			in.workloads = append(in.workloads, auditWorkload{kind: kind, meta: meta, template: tpl})
		}
	}
	type listFunc = func(context.Context, metav1.ListOptions) (runtime.Object, error)
	lists := []struct {
		what string
		list listFunc
		add  func(runtime.Object)
	}{{
		what: "deployments",
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return apps.Deployments(ns).List(ctx, o)
		},
		add: func(o runtime.Object) { w := o.(*appsv1.Deployment); add("Deployment", w.ObjectMeta, &w.Spec.Template) },
	}, {
		what: "replicasets",
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return apps.ReplicaSets(ns).List(ctx, o)
		},
		add: func(o runtime.Object) { w := o.(*appsv1.ReplicaSet); add("ReplicaSet", w.ObjectMeta, &w.Spec.Template) },
	}, {
		what: "statefulsets",
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return apps.StatefulSets(ns).List(ctx, o)
		},
		add: func(o runtime.Object) {
			w := o.(*appsv1.StatefulSet)
			add("StatefulSet", w.ObjectMeta, &w.Spec.Template)
		},
	}, {
		what: "daemonsets",
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return apps.DaemonSets(ns).List(ctx, o)
		},
		add: func(o runtime.Object) { w := o.(*appsv1.DaemonSet); add("DaemonSet", w.ObjectMeta, &w.Spec.Template) },
	}, {
		what: "jobs",
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return batch.Jobs(ns).List(ctx, o)
		},
		add: func(o runtime.Object) { w := o.(*batchv1.Job); add("Job", w.ObjectMeta, &w.Spec.Template) },
	}, {
		what: "cronjobs",
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return batch.CronJobs(ns).List(ctx, o)
		},
		add: func(o runtime.Object) {
			w := o.(*batchv1.CronJob)
			add("CronJob", w.ObjectMeta, &w.Spec.JobTemplate.Spec.Template)
		},
	}, {
		what: "replicationcontrollers",
		list: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.ReplicationControllers(ns).List(ctx, o)
		},
		add: func(o runtime.Object) {
			w := o.(*corev1.ReplicationController)
			add("ReplicationController", w.ObjectMeta, w.Spec.Template)
		},
	}}
	for _, l := range lists {
		if _, err := c.each(ctx, l.what, sel, l.list, l.add); err != nil {
			return in, err
		}
	}

	// The churn: the kubelet's SysctlForbidden Events on pods, and the controllers'
	// FailedCreate Events (a webhook or other admission denying their pods).
	for _, reason := range []string{reasonSysctlForbidden, reasonFailedCreate} {
		opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", reason).String()}
		if _, err := c.each(ctx, "events", opts, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Events(ns).List(ctx, o)
		}, func(o runtime.Object) { in.events = append(in.events, o.(*corev1.Event)) }); err != nil {
			return in, err
		}
	}
	return in, nil
}
