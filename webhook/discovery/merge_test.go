package discovery

import (
	"maps"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

func TestMerge(t *testing.T) {
	nodes := []*corev1.Node{node("a1", "ipc", allows("kernel.sem")), node("b1", "net", allows("net.core.somaxconn"))}
	discovered := groupByAnnotation(nodes...)
	static := []scheduling.Pool{
		{Name: "ipc", NodeSelector: map[string]string{testLabel: "ipc"}, AllowedUnsafeSysctls: []string{"kernel.shm*"}},
		{Name: "big", NodeSelector: map[string]string{testLabel: "big"}, AllowedUnsafeSysctls: []string{"kernel.msg*"}},
	}
	got := Merge(static, discovered, nodes)
	if len(got) != 4 {
		t.Fatalf("merged %d pools, want 4: %+v", len(got), got)
	}
	t.Run("a config pool wins for its name", func(t *testing.T) {
		if got[0].Source != SourceConfig || got[0].Nodes != 1 || got[0].Pool.AllowedUnsafeSysctls[0] != "kernel.shm*" {
			t.Errorf("first = %+v, want the config's ipc with 1 node", got[0])
		}
		if got[2].Pool.Name != "ipc" || got[2].Usable() || !reflect.DeepEqual(problemKinds(got[2]), []ProblemKind{ProblemOverriddenByConfig}) {
			t.Errorf("discovered ipc = %+v, want shown as OverriddenByConfig and unused", got[2])
		}
	})
	t.Run("a config pool selecting no node is kept for a pool scaled to zero and reported", func(t *testing.T) {
		if got[1].Nodes != 0 || !got[1].Usable() || !reflect.DeepEqual(problemKinds(got[1]), []ProblemKind{ProblemNoMatchingNodes}) {
			t.Errorf("big = %+v, want usable with NoMatchingNodes", got[1])
		}
	})
	t.Run("discovered pools that collide with nothing are used", func(t *testing.T) {
		names := []string{}
		for _, p := range PlacementPools(got) {
			names = append(names, p.Name)
		}
		if !reflect.DeepEqual(names, []string{"ipc", "big", "net"}) {
			t.Errorf("placement pools = %v, want [ipc big net]", names)
		}
	})
}

func TestCombiner(t *testing.T) {
	static, err := scheduling.Compile(&scheduling.PlacementConfig{
		TypeMeta:  metav1.TypeMeta{APIVersion: scheduling.ConfigAPIVersion, Kind: scheduling.ConfigKind},
		Discovery: &scheduling.Discovery{PoolLabel: testLabel},
		Pools:     []scheduling.Pool{{Name: "big", NodeSelector: map[string]string{testLabel: "big"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	c, err := NewCombiner(CombinerConfig{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	c.Set(static)
	if sink.last != static {
		t.Fatalf("before discovery the static config must pass through unchanged")
	}
	nodes := []*corev1.Node{node("a1", "ipc", allows("kernel.sem"))}
	c.SetDiscovered(groupByAnnotation(nodes...), nodes)
	var names []string
	for _, p := range sink.last.Pools() {
		names = append(names, p.Name)
	}
	if !reflect.DeepEqual(names, []string{"big", "ipc"}) {
		t.Errorf("pools in force = %v, want [big ipc]", names)
	}
	if sink.last.Policy() != static.Policy() {
		t.Errorf("the config's policy must stay in force")
	}
	if len(c.Report()) != 2 {
		t.Errorf("report = %+v, want two pools", c.Report())
	}
}

func TestUnversionedConfigPool(t *testing.T) {
	// The cluster runs kubelets 1.35 and 1.36: neither allows the 1.37 safe sysctl
	// net.ipv4.tcp_notsent_lowat.
	const newSafe = "net.ipv4.tcp_notsent_lowat"
	nodes := []*corev1.Node{
		node("a1", "ipc", versions("v1.36.1", "6.8.0")),
		node("a2", "ipc", versions("v1.35.3", "6.8.0")),
		node("b1", "net", versions("v1.36.4", "6.8.0")),
	}
	static := []scheduling.Pool{
		{Name: "ipc", NodeSelector: map[string]string{testLabel: "ipc"}},
		{Name: "scaled-to-zero", NodeSelector: map[string]string{testLabel: "zero"}},
		{Name: "pinned", NodeSelector: map[string]string{testLabel: "pinned"}, KubeletVersion: "1.37.0"},
	}
	got := Merge(static, nil, nodes)
	for _, tc := range []struct {
		name, pool, want string
	}{
		{"a pool with nodes gets the lowest kubelet among them", "ipc", "v1.35.3"},
		{"a pool without nodes gets the newest kubelet of the cluster", "scaled-to-zero", "v1.36.4"},
		{"a version the config gives is kept", "pinned", "1.37.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := slices.IndexFunc(got, func(s PoolStatus) bool { return s.Pool.Name == tc.pool })
			if v := got[i].Pool.KubeletVersion; v != tc.want {
				t.Errorf("kubelet version = %q, want %q", v, tc.want)
			}
		})
	}
	t.Run("an unversioned pool is not credited with a sysctl newer than the cluster's kubelets", func(t *testing.T) {
		policy, err := scheduling.CompilePools(scheduling.Policy{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		compiled, _, err := Compile(policy, got)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range compiled.Pools()[:2] {
			safe, err := scheduling.SafeSysctls(p.KubeletVersion, p.KernelVersion)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(safe, newSafe) {
				t.Errorf("pool %s (kubelet %q) is credited with %s, which no kubelet of the cluster allows", p.Name, p.KubeletVersion, newSafe)
			}
		}
	})
	t.Run("without nodes an unversioned pool means the newest kubelet this build knows", func(t *testing.T) {
		if v := Merge(static, nil, nil)[0].Pool.KubeletVersion; v != "" {
			t.Errorf("kubelet version = %q, want empty", v)
		}
	})
}

func TestDiscoveredPoolRestrictions(t *testing.T) {
	config := func(d scheduling.Discovery) *scheduling.Compiled {
		t.Helper()
		d.PoolLabel = testLabel
		c, err := scheduling.Compile(&scheduling.PlacementConfig{Discovery: &d})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	nodes := []*corev1.Node{
		node("ipc-1", "ipc", allows("kernel.shm*"), taint("dedicated", "ipc", corev1.TaintEffectNoSchedule)),
		node("net-1", "net", allows("net.core.somaxconn"), taint("dedicated", "net", corev1.TaintEffectNoSchedule)),
	}
	combine := func(t *testing.T, static *scheduling.Compiled) (*Combiner, *recordingSink) {
		t.Helper()
		sink := &recordingSink{}
		c, err := NewCombiner(CombinerConfig{Sink: sink})
		if err != nil {
			t.Fatal(err)
		}
		c.Set(static)
		c.SetDiscovered(groupByAnnotation(nodes...), nodes)
		return c, sink
	}
	plan := func(sink *recordingSink, namespaceLabels map[string]string, sysctl string) scheduling.Decision {
		labels := map[string]string{scheduling.LabelEnabled: "true"}
		maps.Copy(labels, namespaceLabels)
		pod := &corev1.Pod{Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: sysctl, Value: "1"}}},
			Containers:      []corev1.Container{{Name: "c", Image: "busybox"}},
		}}
		return scheduling.Plan(scheduling.Input{Pod: pod, Namespace: scheduling.Namespace{Name: "ns", Labels: labels}, Config: sink.last})
	}
	dbOnly := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "db"}}

	t.Run("a discovered pool restricted to namespace X gives no toleration to a pod in Y", func(t *testing.T) {
		_, sink := combine(t, config(scheduling.Discovery{Pools: []scheduling.DiscoveredPool{{Name: "ip*", NamespaceSelector: dbOnly}}}))
		if d := plan(sink, map[string]string{"team": "db"}, "kernel.shmmax"); d.Outcome != scheduling.OutcomeChanged || len(d.Changes.Tolerations) != 1 {
			t.Errorf("in team=db: %s %s, tolerations %v; want placed on ipc with its toleration", d.Outcome, d.Reason, d.Changes.Tolerations)
		}
		d := plan(sink, map[string]string{"team": "web"}, "kernel.shmmax")
		if d.Outcome != scheduling.OutcomeUnplaceable || len(d.Changes.Tolerations) != 0 || d.Allowed {
			t.Errorf("in team=web: %s %s, tolerations %v, allowed %v; want denied as unplaceable without a toleration", d.Outcome, d.Reason, d.Changes.Tolerations, d.Allowed)
		}
	})

	t.Run("an unlisted discovered pool stays open to every namespace", func(t *testing.T) {
		_, sink := combine(t, config(scheduling.Discovery{Pools: []scheduling.DiscoveredPool{{Name: "ipc", NamespaceSelector: dbOnly}}}))
		if d := plan(sink, nil, "net.core.somaxconn"); d.Outcome != scheduling.OutcomeChanged {
			t.Errorf("net for any namespace: %s %s; want placed", d.Outcome, d.Reason)
		}
	})

	t.Run("with onlyListedPools an unlisted discovered pool is shown as NotListed and not used", func(t *testing.T) {
		c, sink := combine(t, config(scheduling.Discovery{OnlyListedPools: true, Pools: []scheduling.DiscoveredPool{{Name: "ipc"}}}))
		if d := plan(sink, nil, "net.core.somaxconn"); d.Outcome != scheduling.OutcomeUnplaceable {
			t.Errorf("net: %s %s; want unplaceable, net is not listed", d.Outcome, d.Reason)
		}
		if d := plan(sink, nil, "kernel.shmmax"); d.Outcome != scheduling.OutcomeChanged {
			t.Errorf("ipc: %s %s; want placed, ipc is listed", d.Outcome, d.Reason)
		}
		net, _ := poolNamed(c.Report(), "net")
		if net.Usable() || !reflect.DeepEqual(problemKinds(net), []ProblemKind{ProblemNotListed}) {
			t.Errorf("net = %+v; want unused with NotListed", net)
		}
	})
}
