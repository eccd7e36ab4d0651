package audit

import (
	"context"
	"fmt"
	"io"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// collector lists what the audit reads, page by page.
type collector struct {
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
func (c *collector) each(ctx context.Context, what string, opts metav1.ListOptions, list func(context.Context, metav1.ListOptions) (runtime.Object, error), fn func(runtime.Object)) (int, error) {
	p := pager.New(list)
	p.PageSize = c.pageSize
	n := 0
	err := p.EachListItem(ctx, opts, func(obj runtime.Object) error {
		fn(obj)
		n++
		if n%progressEvery == 0 {
			_, _ = fmt.Fprintf(c.progress, "audit: listed %d %s\n", n, what) // progress only: a closed stderr must not stop the audit
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("could not list %s (the audit needs list on %s; see deploy/audit/clusterrole.yaml): %w", what, what, err)
	}
	return n, nil
}

// collect lists namespaces, nodes, pods, workloads and the sysctl Events.
func (c *collector) collect(ctx context.Context) (input, error) {
	in := input{namespaces: map[string]*corev1.Namespace{}}
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
			in.workloads = append(in.workloads, workload{kind: kind, meta: meta, template: tpl})
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
