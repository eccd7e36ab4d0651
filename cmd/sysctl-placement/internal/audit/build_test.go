package audit

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// auditFixture is a small cluster: team-a opted in, team-b not; nodes of the example
// config's general and ipc pools.
func auditFixture(t *testing.T) input {
	t.Helper()
	compiled, err := config.Compile(deploy.ExampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	node := func(name, pool string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"sysctl-placement.io/pool": pool}},
			Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", KernelVersion: "6.8.0"}}}
	}
	nodes := []*corev1.Node{node("general-0", "general"), node("ipc-0", "ipc")}
	in := input{
		namespaces: map[string]*corev1.Namespace{
			"team-a": {ObjectMeta: metav1.ObjectMeta{Name: "team-a", Labels: map[string]string{scheduling.LabelEnabled: "true"}}},
			"team-b": {ObjectMeta: metav1.ObjectMeta{Name: "team-b"}},
		},
		nodes:  nodes,
		config: compiled,
		pools:  discovery.Merge(compiled.Pools(), nil, nodes),
	}
	sysctls := func(names ...string) *corev1.PodSecurityContext {
		sc := &corev1.PodSecurityContext{}
		for _, n := range names {
			sc.Sysctls = append(sc.Sysctls, corev1.Sysctl{Name: n, Value: "1"})
		}
		return sc
	}
	workload := func(ns, kind, name string, owner *metav1.OwnerReference, sc *corev1.PodSecurityContext) {
		meta := metav1.ObjectMeta{Namespace: ns, Name: name}
		if owner != nil {
			meta.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		in.workloads = append(in.workloads, workload{kind: kind, meta: meta, template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{SecurityContext: sc}}})
	}
	controller := func(kind, name string) *metav1.OwnerReference {
		return &metav1.OwnerReference{Kind: kind, Name: name, Controller: ptr.To(true)}
	}
	pod := func(ns, name string, owner *metav1.OwnerReference, node string, phase corev1.PodPhase, reason string, sc *corev1.PodSecurityContext) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: node, SecurityContext: sc},
			Status: corev1.PodStatus{Phase: phase, Reason: reason}}
		if owner != nil {
			p.OwnerReferences = []metav1.OwnerReference{*owner}
		}
		in.pods = append(in.pods, p)
		return p
	}

	// team-b/postgres: not opted in, its pods fail with SysctlForbidden on general-0.
	shm := sysctls("kernel.shmmax", "kernel.sem")
	workload("team-b", "Deployment", "postgres", nil, shm)
	workload("team-b", "ReplicaSet", "postgres-1", controller("Deployment", "postgres"), shm)
	pod("team-b", "postgres-1-a", controller("ReplicaSet", "postgres-1"), "general-0", corev1.PodFailed, reasonSysctlForbidden, shm)
	pod("team-b", "postgres-1-b", controller("ReplicaSet", "postgres-1"), "general-0", corev1.PodFailed, reasonSysctlForbidden, shm)
	in.events = append(in.events, &corev1.Event{Reason: reasonSysctlForbidden, Count: 3,
		InvolvedObject: corev1.ObjectReference{Namespace: "team-b", Kind: "Pod", Name: "postgres-1-a"}})
	// team-b/mq: not opted in, asks for what no pool allows.
	workload("team-b", "StatefulSet", "mq", nil, sysctls("kernel.msgmax", "net.core.somaxconn"))
	// team-a/cache: placed by the webhook, running on ipc-0.
	workload("team-a", "Deployment", "cache", nil, shm)
	placed := pod("team-a", "cache-x", controller("Deployment", "cache"), "ipc-0", corev1.PodRunning, "", shm)
	placed.Labels = map[string]string{scheduling.LabelPlaced: "true"}
	placed.Spec.NodeSelector = map[string]string{"sysctl-placement.io/pool": "ipc"}
	placed.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "ipc", Effect: corev1.TaintEffectNoSchedule}}
	// team-a/bare: a bare pod bound to general-0 whose kubelet refuses it (still pending).
	pod("team-a", "bare", nil, "general-0", corev1.PodPending, "", sysctls("kernel.shmmax"))
	in.Listed = Listed{Pods: 4, Workloads: 4, Nodes: 2}
	return in
}

func TestAuditVerdicts(t *testing.T) {
	r := build(auditFixture(t))
	got := map[string]subject{}
	for _, s := range r.Workloads {
		got[s.Namespace+"/"+s.Kind+"/"+s.Name] = s
	}
	if len(got) != 4 {
		t.Fatalf("want 4 subjects (ReplicaSets folded into their Deployment), got %d: %+v", len(got), r.Workloads)
	}

	t.Run("pods failing with SysctlForbidden make their Deployment broken, and opting in would place them", func(t *testing.T) {
		s := got["team-b/Deployment/postgres"]
		if s.Status != "broken" || s.OptedIn || s.Pods.Forbidden != 2 || s.Events.SysctlForbidden != 3 {
			t.Errorf("postgres = %+v", s)
		}
		if s.Webhook.Outcome != scheduling.VerdictPlaced || strings.Join(s.Webhook.Pools, ",") != "ipc" || !strings.Contains(s.Webhook.Added, "tolerations dedicated=ipc:NoSchedule") {
			t.Errorf("postgres webhook plan = %+v, want placed on ipc with its toleration", s.Webhook)
		}
	})
	t.Run("a workload whose sysctls no single pool allows together is unplaceable, naming the combination", func(t *testing.T) {
		s := got["team-b/StatefulSet/mq"]
		if !s.Unplaceable || s.Webhook.Outcome != scheduling.VerdictDenied || strings.Join(s.Webhook.Unallowed, ",") != "kernel.msgmax+net.core.somaxconn" {
			t.Errorf("mq = %+v", s)
		}
		if s.Status != "no pods" {
			t.Errorf("mq has no pods, status = %s", s.Status)
		}
	})
	t.Run("a workload whose pods the webhook placed counts as placed, and its new pods are placed too", func(t *testing.T) {
		s := got["team-a/Deployment/cache"]
		if s.Status != "placed" || !s.OptedIn || s.Webhook.Outcome != scheduling.VerdictPlaced || s.Broken || s.Pods.Running != 1 {
			t.Errorf("cache = %+v", s)
		}
	})
	t.Run("a pod bound to a node whose kubelet refuses its sysctls is broken, and the node problem says why", func(t *testing.T) {
		s := got["team-a/Pod/bare"]
		if !s.Broken || s.Pods.OnRefusingNodes != 1 || len(s.NodeProblems) != 1 ||
			!strings.Contains(s.NodeProblems[0], "general-0") || !strings.Contains(s.NodeProblems[0], "does not allow kernel.shmmax") {
			t.Errorf("bare = %+v", s)
		}
	})
	t.Run("the namespace summary says what opting in would change", func(t *testing.T) {
		var b namespaceSummary
		for _, ns := range r.Namespaces {
			if ns.Name == "team-b" {
				b = ns
			}
		}
		if b.OptedIn || b.Placeable != 1 || b.BrokenPlaceable != 1 || b.Denied != 1 || strings.Join(b.Unallowed, ",") != "kernel.msgmax+net.core.somaxconn" {
			t.Errorf("team-b = %+v", b)
		}
	})
	if r.Totals != (Totals{Workloads: 4, Broken: 2, Unplaceable: 1, Placed: 1, NotOptedIn: 2}) {
		t.Errorf("totals = %+v", r.Totals)
	}
}

func TestAuditChecks(t *testing.T) {
	defer func(saved []checkFunc) { checks = saved }(checks)
	checks = append(checks, func(ns *corev1.Namespace, pod *corev1.Pod) []finding {
		if ns != nil && ns.Name == "team-b" {
			return []finding{{Reason: "PodSecurity", Detail: "baseline forbids kernel.shmmax"}}
		}
		return nil
	})
	r := build(auditFixture(t))
	n := 0
	for _, s := range r.Workloads {
		n += len(s.Findings)
	}
	if n != 2 {
		t.Errorf("want the check's finding on both team-b workloads, got %d", n)
	}
}

func TestAuditPodSecurity(t *testing.T) {
	in := auditFixture(t)
	in.namespaces["team-c"] = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-c",
		Labels: map[string]string{scheduling.LabelEnabled: "true", "pod-security.kubernetes.io/enforce": "baseline"}}}
	in.workloads = append(in.workloads, workload{kind: "Deployment", meta: metav1.ObjectMeta{Namespace: "team-c", Name: "db"},
		template: &corev1.PodTemplateSpec{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "1"}}}}}})
	r := build(in)
	var db subject
	for _, s := range r.Workloads {
		if s.Namespace == "team-c" {
			db = s
		}
	}
	t.Run("the workload carries the enforce finding and the webhook's denial, and is not called unplaceable", func(t *testing.T) {
		if len(db.Findings) != 1 || db.Findings[0].Reason != "PodSecurity" || !strings.Contains(db.Findings[0].Detail, "enforce baseline:latest: forbidden sysctls kernel.shmmax") {
			t.Errorf("findings = %+v", db.Findings)
		}
		if db.Webhook.Outcome != scheduling.VerdictDenied || db.Webhook.Reason != scheduling.ReasonPodSecurityForbidden || db.Unplaceable || len(db.Webhook.Unallowed) != 0 {
			t.Errorf("db = %+v", db)
		}
	})
	t.Run("the namespace summary is Pod Security's own wording", func(t *testing.T) {
		var out bytes.Buffer
		if err := Write(&out, "table", r); err != nil {
			t.Fatal(err)
		}
		for _, ns := range r.Namespaces {
			if ns.Name == "team-c" && (ns.Refused != 1 || ns.Placeable != 0 || ns.Denied != 0) {
				t.Errorf("team-c = %+v; want its one workload refused, not placeable", ns)
			}
		}
		want := "namespace team-c enforces Pod Security baseline:latest: 1 workload with unsafe sysctls can never run there"
		if !strings.Contains(out.String(), "Pod Security:\n  "+want) || !strings.Contains(out.String(), "denied (PodSecurityForbidden)") {
			t.Errorf("the table lacks %q or the denial's reason:\n%s", want, out.String())
		}
	})
}
