package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// mapProber answers from a map of node name to allowlist and counts its reads; a node
// in gates is not answered until its channel is closed.
type mapProber struct {
	mu      sync.Mutex
	allowed map[string][]string
	gates   map[string]chan struct{}
	reads   int
}

func (p *mapProber) Probe(ctx context.Context, n *corev1.Node) ([]string, error) {
	p.mu.Lock()
	gate := p.gates[n.Name]
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	allowed, ok := p.allowed[n.Name]
	if !ok {
		return nil, errors.New("connection refused")
	}
	return allowed, nil
}

func (p *mapProber) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

func (p *mapProber) set(node string, allowed ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.allowed[node] = allowed
}

// leads is an election this replica always wins; follows one it never wins.
func leads(ctx context.Context, lead func(context.Context)) error { lead(ctx); return nil }
func follows(ctx context.Context, _ func(context.Context)) error  { <-ctx.Done(); return nil }

func share(identity string, elect func(context.Context, func(context.Context)) error) *ShareConfig {
	return &ShareConfig{Namespace: "sysctl-placement", Identity: identity, Elect: elect, PublishInterval: 10 * time.Millisecond}
}

func poolAllows(f *discoveryFixture, pool string) []string {
	p, _ := poolNamed(f.combiner.Report(), pool)
	return p.Pool.AllowedUnsafeSysctls
}

// holdLease makes identity the holder of the share's Lease, as the election would.
func holdLease(t *testing.T, client *fake.Clientset, identity string) {
	t.Helper()
	leases := client.CoordinationV1().Leases("sysctl-placement")
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "sysctl-placement", Name: SharedName}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &identity}}
	if _, err := leases.Create(t.Context(), lease, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = leases.Update(t.Context(), lease, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
}

// readShared reads the published result as replicas do.
func readShared(t *testing.T, client *fake.Clientset) *SharedResult {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps("sysctl-placement").Get(t.Context(), SharedName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := parseShared(cm)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// shipShared creates the ConfigMap as the manifests ship it: no data.
func shipShared(t *testing.T, client *fake.Clientset) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "sysctl-placement", Name: SharedName}}
	if _, err := client.CoreV1().ConfigMaps("sysctl-placement").Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestSharedDiscovery(t *testing.T) {
	client := fake.NewClientset()
	shipShared(t, client)
	holdLease(t, client, "leader")
	for _, n := range []*corev1.Node{node("ipc-1", "ipc"), node("ipc-2", "ipc"), node("net-1", "net"), node("gone-1", "gone")} {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	leaderProber := &mapProber{allowed: map[string][]string{
		"ipc-1": {"kernel.shm*", "kernel.sem"}, "ipc-2": {"kernel.shmmax", "kernel.sem"}, "net-1": {"net.core.somaxconn"},
	}, gates: map[string]chan struct{}{}}
	leader := startReplica(t, client, Config{Prober: leaderProber, Share: share("leader", leads), Refresh: 200 * time.Millisecond})
	followerProber := &mapProber{allowed: map[string][]string{}}
	follower := startReplica(t, client, Config{Prober: followerProber, Share: share("follower", follows)})

	t.Run("the elected replica is ready once it has published a complete result", func(t *testing.T) {
		res := readShared(t, client)
		if !res.Complete || res.Leader != "leader" {
			t.Errorf("shared result = %+v; want complete, by leader", res)
		}
	})

	t.Run("a follower reads no kubelet and places like the leader", func(t *testing.T) {
		if n := followerProber.count(); n != 0 {
			t.Errorf("the follower read %d kubelets; want none", n)
		}
		for _, pool := range []string{"ipc", "net"} {
			if got, want := poolAllows(follower, pool), poolAllows(leader, pool); !reflect.DeepEqual(got, want) || len(got) == 0 {
				t.Errorf("pool %s: the follower allows %v, the leader %v; want the same, not empty", pool, got, want)
			}
		}
		ipc, _ := poolNamed(follower.combiner.Report(), "ipc")
		if want := []string{"kernel.sem", "kernel.shmmax"}; !reflect.DeepEqual(ipc.Pool.AllowedUnsafeSysctls, want) || !reflect.DeepEqual(problemKinds(ipc), []ProblemKind{ProblemNodesDisagree}) {
			t.Errorf("ipc = %+v; want %v and NodesDisagree, computed by the follower from the shared allowlists", ipc, want)
		}
	})

	t.Run("an unreachable kubelet is reported on every replica", func(t *testing.T) {
		gone, _ := poolNamed(follower.combiner.Report(), "gone")
		if len(gone.Pool.AllowedUnsafeSysctls) != 0 || !reflect.DeepEqual(problemKinds(gone), []ProblemKind{ProblemKubeletUnreachable}) {
			t.Errorf("gone = %+v; want no unsafe sysctl and KubeletUnreachable", gone)
		}
	})

	t.Run("a restarted replica is ready from the published result without reading a kubelet", func(t *testing.T) {
		p := &mapProber{allowed: map[string][]string{}}
		start := time.Now()
		restarted := startReplica(t, client, Config{Prober: p, Share: share("restarted", follows)})
		if p.count() != 0 || !reflect.DeepEqual(poolAllows(restarted, "ipc"), poolAllows(leader, "ipc")) {
			t.Errorf("restarted replica read %d kubelets and allows %v in ipc; want none read and %v", p.count(), poolAllows(restarted, "ipc"), poolAllows(leader, "ipc"))
		}
		t.Logf("ready after %v", time.Since(start))
	})

	t.Run("a new node that is its pool's only node allows nothing until the leader has read it", func(t *testing.T) {
		gate := make(chan struct{})
		leaderProber.mu.Lock()
		leaderProber.gates["solo-1"] = gate
		leaderProber.allowed["solo-1"] = []string{"kernel.msgmax"}
		leaderProber.mu.Unlock()
		if _, err := client.CoreV1().Nodes().Create(t.Context(), node("solo-1", "solo"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the follower sees pool solo", func() bool { _, ok := poolNamed(follower.combiner.Report(), "solo"); return ok })
		solo, _ := poolNamed(follower.combiner.Report(), "solo")
		if len(solo.Pool.AllowedUnsafeSysctls) != 0 || len(solo.Problems) != 1 || !strings.Contains(solo.Problems[0].Detail, "not read yet") {
			t.Errorf("solo before its kubelet was read = %+v; want nothing allowed and KubeletUnreachable: not read yet", solo)
		}
		close(gate)
		eventually(t, "the follower's solo allows kernel.msgmax", func() bool {
			return reflect.DeepEqual(poolAllows(follower, "solo"), []string{"kernel.msgmax"})
		})
	})

	t.Run("a kubelet whose allowlist changes is reflected on every replica within the refresh", func(t *testing.T) {
		leaderProber.set("net-1", "net.core.somaxconn", "net.ipv4.tcp_*")
		eventually(t, "the follower's net allows net.ipv4.tcp_*", func() bool {
			return reflect.DeepEqual(poolAllows(follower, "net"), []string{"net.core.somaxconn", "net.ipv4.tcp_*"})
		})
	})
}

func TestSharedResult(t *testing.T) {
	nodes := []*corev1.Node{node("a-1", "a"), node("a-2", "a"), node("a-3", "a"), node("b-1", "b"), node("c-1", "c")}
	in := map[string]Allowlist{
		"a-1": {Known: true, Patterns: []string{"kernel.sem"}},
		"a-2": {Known: true, Patterns: []string{"kernel.sem"}, Err: errors.New("timeout")},
		"a-3": {Known: true, Patterns: []string{}},
		"b-1": {Err: errors.New("connection refused")},
		// c-1 was never read.
	}
	res := encodeShared(nodes, testLabel, in, map[string]time.Time{"a-1": time.Unix(100, 0)}, "me", true, time.Unix(200, 0))

	t.Run("it survives JSON and names exactly the nodes read", func(t *testing.T) {
		data, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseShared(&corev1.ConfigMap{Data: map[string]string{SharedKey: string(data)}})
		if err != nil {
			t.Fatal(err)
		}
		out := got.decode()
		if len(out) != len(in) {
			t.Errorf("decoded %d nodes, want %d: %+v", len(out), len(in), out)
		}
		for name, want := range in {
			have := out[name]
			if have.Known != want.Known || (have.Err == nil) != (want.Err == nil) || (want.Known && strings.Join(have.Patterns, ",") != strings.Join(want.Patterns, ",")) {
				t.Errorf("%s = %+v, want %+v", name, have, want)
			}
		}
		if _, ok := out["c-1"]; ok {
			t.Error("c-1 was never read but the result names it")
		}
		if !got.Complete || got.Leader != "me" || got.Pools["a"].ReadAt == nil || !got.Pools["a"].ReadAt.Time.Equal(time.Unix(100, 0)) {
			t.Errorf("result = %+v; want complete, by me, pool a read at 100", got)
		}
	})

	t.Run("nodes allowing the same are listed once per allowlist", func(t *testing.T) {
		if n := len(res.Pools["a"].Allowlists); n != 2 {
			t.Errorf("pool a has %d allowlist groups, want 2: %+v", n, res.Pools["a"].Allowlists)
		}
	})

	t.Run("a ConfigMap that is not a result is refused with what to do", func(t *testing.T) {
		_, err := parseShared(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: SharedName}, Data: map[string]string{SharedKey: "{"}})
		if err == nil || !strings.Contains(err.Error(), "delete the key") {
			t.Errorf("err = %v; want one saying to delete the key", err)
		}
	})

	t.Run("the ConfigMap as shipped, with no data, is no result yet and no error", func(t *testing.T) {
		got, err := parseShared(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: SharedName}})
		if got != nil || err != nil {
			t.Errorf("parseShared = %+v, %v; want nil, nil", got, err)
		}
	})
}

// sharedIgnored reads sysctl_placement_discovery_shared_ignored_total{reason} from reg
// (by name, so the test builds against any version of the metrics).
func sharedIgnored(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return counterByReason(t, reg, "sysctl_placement_discovery_shared_ignored_total", reason)
}

// counterByReason reads the counter name{reason} from reg; 0 when it has no such sample.
func counterByReason(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestSharedResultFromANonHolderIsIgnored(t *testing.T) {
	client := fake.NewClientset()
	for _, n := range []*corev1.Node{node("ipc-1", "ipc"), node("ipc-2", "ipc")} {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := share("follower", follows)
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	publish := func(t *testing.T, leader string, allowed ...string) {
		t.Helper()
		nodes, err := client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ptrs []*corev1.Node
		allowlists := map[string]Allowlist{}
		for i := range nodes.Items {
			ptrs = append(ptrs, &nodes.Items[i])
			allowlists[nodes.Items[i].Name] = Allowlist{Known: true, Patterns: allowed}
		}
		current, err := client.CoreV1().ConfigMaps(cfg.Namespace).Get(t.Context(), cfg.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			current = nil
		} else if err != nil {
			t.Fatal(err)
		}
		res := encodeShared(ptrs, testLabel, allowlists, nil, leader, true, time.Now())
		if _, err := writeShared(t.Context(), client, cfg, current, res); err != nil {
			t.Fatal(err)
		}
	}
	shipShared(t, client)
	holdLease(t, client, "leader")
	publish(t, "leader", "kernel.sem")
	reg := prometheus.NewRegistry()
	follower := startReplica(t, client, Config{Prober: &mapProber{allowed: map[string][]string{}}, Share: share("follower", follows), Metrics: NewMetrics(reg)})
	if got := poolAllows(follower, "ipc"); !reflect.DeepEqual(got, []string{"kernel.sem"}) {
		t.Fatalf("ipc allows %v from the holder's result; want [kernel.sem]", got)
	}

	// ignoredOrTaken waits until the follower has either counted n ignored results or
	// taken sysctl into pool ipc, and fails the test if it took it.
	ignoredOrTaken := func(t *testing.T, n float64, sysctl string) {
		t.Helper()
		eventually(t, "the follower ignores or takes the result", func() bool {
			return sharedIgnored(t, reg, "NotLeaseHolder") >= n || slices.Contains(poolAllows(follower, "ipc"), sysctl)
		})
		if got := poolAllows(follower, "ipc"); !reflect.DeepEqual(got, []string{"kernel.sem"}) {
			t.Errorf("ipc allows %v; want [kernel.sem], the holder's result kept", got)
		}
	}

	t.Run("a result naming a leader that holds no Lease is ignored", func(t *testing.T) {
		publish(t, "intruder", "kernel.sem", "kernel.shmmax")
		ignoredOrTaken(t, 1, "kernel.shmmax")
	})

	t.Run("a result of a replica that lost the Lease is ignored", func(t *testing.T) {
		holdLease(t, client, "leader-2")
		publish(t, "leader", "kernel.sem", "kernel.msgmax")
		ignoredOrTaken(t, 2, "kernel.msgmax")
	})

	t.Run("the holder's next result is taken", func(t *testing.T) {
		publish(t, "leader-2", "kernel.sem", "kernel.shmall")
		eventually(t, "ipc allows kernel.shmall", func() bool {
			return reflect.DeepEqual(poolAllows(follower, "ipc"), []string{"kernel.sem", "kernel.shmall"})
		})
	})
}

func TestSharedConfigMapMissingIsNotCreated(t *testing.T) {
	client := fake.NewClientset()
	holdLease(t, client, "leader")
	if _, err := client.CoreV1().Nodes().Create(t.Context(), node("ipc-1", "ipc"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logger, logs := logtest.NewNullLogger()
	prober := &mapProber{allowed: map[string][]string{"ipc-1": {"kernel.sem"}}}
	leader := launchReplica(t, client, Config{Prober: prober, Share: share("leader", leads), Metrics: NewMetrics(reg), Logger: logger})
	missing := func() float64 {
		return counterByReason(t, reg, "sysctl_placement_discovery_shared_write_failures_total", "ConfigMapMissing")
	}

	t.Run("the elected replica reads the kubelets but does not create the ConfigMap", func(t *testing.T) {
		get := func() error {
			_, err := client.CoreV1().ConfigMaps("sysctl-placement").Get(t.Context(), SharedName, metav1.GetOptions{})
			return err
		}
		eventually(t, "the elected replica tried to publish twice, or created the ConfigMap", func() bool { return missing() >= 2 || get() == nil })
		if err := get(); !apierrors.IsNotFound(err) {
			t.Errorf("get ConfigMap %s: %v; want NotFound, serve never creates it", SharedName, err)
		}
		if n := missing(); n < 2 {
			t.Errorf("%s{reason=\"ConfigMapMissing\"} = %v; want every try counted", "sysctl_placement_discovery_shared_write_failures_total", n)
		}
		if prober.count() == 0 {
			t.Error("the elected replica read no kubelet")
		}
	})

	t.Run("it logs once which object to re-apply", func(t *testing.T) {
		var errLines []string
		for _, e := range logs.AllEntries() {
			if e.Level == logrus.ErrorLevel {
				errLines = append(errLines, fmt.Sprint(e.Data[logrus.ErrorKey]))
			}
		}
		if len(errLines) != 1 || !strings.Contains(errLines[0], "sysctl-placement/"+SharedName) || !strings.Contains(errLines[0], "re-apply the manifests") {
			t.Errorf("error log lines = %q; want one naming ConfigMap sysctl-placement/%s and saying to re-apply the manifests", errLines, SharedName)
		}
	})

	t.Run("no replica is ready without a published result", func(t *testing.T) {
		if leader.disc.FirstPassDone() {
			t.Error("the elected replica is ready; want not ready until its result is published")
		}
	})

	t.Run("once the manifests are re-applied, the result is published and the replica ready", func(t *testing.T) {
		shipShared(t, client)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := leader.disc.WaitForFirstPass(ctx); err != nil {
			t.Fatalf("not ready after the ConfigMap was shipped: %v", err)
		}
		if got := poolAllows(leader, "ipc"); !reflect.DeepEqual(got, []string{"kernel.sem"}) {
			t.Errorf("ipc allows %v; want [kernel.sem]", got)
		}
	})
}
