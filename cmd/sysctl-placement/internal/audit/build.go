package audit

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// build decides every verdict of the report.
func build(in input) Report {
	a := auditor{in: in, nodes: map[string]*corev1.Node{}, nodeTables: map[string]*scheduling.Compiled{}, subjects: map[string]*subject{}, owners: map[string]string{}}
	for _, n := range in.nodes {
		a.nodes[n.Name] = n
	}
	a.attachWorkloads()
	a.attachPods()
	a.attachEvents()
	return a.report()
}

// auditor carries one build's state.
type auditor struct {
	in    input
	nodes map[string]*corev1.Node
	// nodeTables caches a one-pool placement table per kind of node (pool, kubelet and
	// kernel version): the node's kubelet rules, evaluated by scheduling.Plan itself.
	nodeTables map[string]*scheduling.Compiled
	subjects   map[string]*subject
	// templates are the subjects' pods as their templates create them.
	templates map[string]*corev1.Pod
	// owners maps a listed workload to the subject it belongs to (a ReplicaSet to
	// its Deployment).
	owners map[string]string
	order  []string
}

func objectKey(ns, kind, name string) string { return ns + "/" + kind + "/" + name }

func controllerKey(ns string, refs []metav1.OwnerReference) (string, bool) {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller {
			return objectKey(ns, r.Kind, r.Name), true
		}
	}
	return "", false
}

func (a *auditor) subjectFor(key, ns, kind, name string, pod *corev1.Pod) *subject {
	if s, ok := a.subjects[key]; ok {
		return s
	}
	s := &subject{Namespace: ns, Kind: kind, Name: name, Sysctls: scheduling.SysctlNames(pod)}
	a.subjects[key] = s
	if a.templates == nil {
		a.templates = map[string]*corev1.Pod{}
	}
	a.templates[key] = pod
	a.order = append(a.order, key)
	return s
}

// attachWorkloads makes a subject of every top-level workload and maps the others
// (ReplicaSets of a Deployment, Jobs of a CronJob) to it.
func (a *auditor) attachWorkloads() {
	byKey := map[string]workload{}
	for _, w := range a.in.workloads {
		byKey[objectKey(w.meta.Namespace, w.kind, w.meta.Name)] = w
	}
	var top func(key string, depth int) string
	top = func(key string, depth int) string {
		w, ok := byKey[key]
		if !ok || depth > 4 {
			return key
		}
		if owner, ok := controllerKey(w.meta.Namespace, w.meta.OwnerReferences); ok {
			if _, listed := byKey[owner]; listed {
				return top(owner, depth+1)
			}
		}
		return key
	}
	for _, w := range a.in.workloads {
		key := objectKey(w.meta.Namespace, w.kind, w.meta.Name)
		root := top(key, 0)
		a.owners[key] = root
		if root == key {
			a.subjectFor(key, w.meta.Namespace, w.kind, w.meta.Name, &corev1.Pod{ObjectMeta: w.template.ObjectMeta, Spec: w.template.Spec})
		}
	}
}

// attachPods counts each pod under its subject and checks its node.
func (a *auditor) attachPods() {
	for _, p := range a.in.pods {
		key := objectKey(p.Namespace, "Pod", p.Name)
		kind, name := "Pod", p.Name
		if owner, ok := controllerKey(p.Namespace, p.OwnerReferences); ok {
			if root, listed := a.owners[owner]; listed {
				key = root
			} else {
				// An owner the audit does not list (a custom controller): the owner is
				// the subject, planned from this pod.
				key = owner
				for _, r := range p.OwnerReferences {
					if r.Controller != nil && *r.Controller {
						kind, name = r.Kind, r.Name
					}
				}
			}
			a.owners[objectKey(p.Namespace, "Pod", p.Name)] = key
		}
		s := a.subjectFor(key, p.Namespace, kind, name, p)
		s.Pods.Total++
		switch {
		case p.Status.Phase == corev1.PodFailed && p.Status.Reason == reasonSysctlForbidden:
			s.Pods.Forbidden++
		case p.Status.Phase == corev1.PodRunning:
			s.Pods.Running++
		}
		if p.Labels[scheduling.LabelPlaced] == "true" {
			s.Pods.Placed++
		}
		if p.Spec.NodeName == "" {
			continue
		}
		if !slices.Contains(s.Nodes, p.Spec.NodeName) {
			s.Nodes = append(s.Nodes, p.Spec.NodeName)
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue // a failed pod is counted above; its kubelet has spoken
		}
		if why := a.nodeRefuses(p); why != "" {
			s.Pods.OnRefusingNodes++
			s.NodeProblems = append(s.NodeProblems, fmt.Sprintf("pod %s on node %s: %s", p.Name, p.Spec.NodeName, why))
		}
	}
}

// attachEvents counts the churn: the kubelet's SysctlForbidden Events on pods and the
// controllers' FailedCreate Events that name a sysctl.
func (a *auditor) attachEvents() {
	for _, e := range a.in.events {
		count := max(int(e.Count), 1)
		if e.Series != nil {
			count = max(count, int(e.Series.Count))
		}
		ref := e.InvolvedObject
		key := objectKey(ref.Namespace, ref.Kind, ref.Name)
		if root, ok := a.owners[key]; ok {
			key = root
		}
		s, ok := a.subjects[key]
		if !ok {
			continue // its pod or workload is gone, or has no sysctls
		}
		switch {
		case e.Reason == reasonSysctlForbidden:
			s.Events.SysctlForbidden += count
		case e.Reason == reasonFailedCreate && strings.Contains(strings.ToLower(e.Message), "sysctl"):
			s.Events.FailedCreate += count
		}
	}
}
