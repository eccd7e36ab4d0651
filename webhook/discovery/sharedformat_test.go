package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fleetResult is a synthetic result of nodes nodes in pools pools, named as the three
// large managed offerings name them (EKS by private DNS name, GKE and AKS by pool and a
// random suffix), with one pool in three allowing nothing and one node in a hundred
// unreachable with the error a kubelet that refuses connections gives.
func fleetResult(nodes, pools int) ([]*corev1.Node, map[string]Allowlist) {
	rnd := rand.New(rand.NewPCG(1, 2))
	hex := func(n int) string {
		const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[rnd.IntN(len(digits))]
		}
		return string(b)
	}
	var out []*corev1.Node
	allowlists := map[string]Allowlist{}
	for i := range nodes {
		p := i % pools
		var name string
		switch p % 3 {
		case 0:
			for name == "" || allowlists[name].Known {
				name = fmt.Sprintf("ip-10-%d-%d-%d.us-west-2.compute.internal", rnd.IntN(256), rnd.IntN(256), rnd.IntN(256))
			}
		case 1:
			name = fmt.Sprintf("gke-prod-cluster-pool-%03d-%s-%s", p, hex(8), hex(4))
		default:
			name = fmt.Sprintf("aks-pool%03d-%08d-vmss%s", p, rnd.IntN(1e8), hex(6))
		}
		pool := fmt.Sprintf("pool-%03d", p)
		out = append(out, node(name, pool))
		al := Allowlist{Known: true, Patterns: fleetAllowedPatterns(p)}
		if i%100 == 0 {
			al.Err = fmt.Errorf(`Get "https://10.%d.%d.%d:10250/configz": dial tcp 10.%[1]d.%[2]d.%[3]d:10250: connect: connection refused`, rnd.IntN(256), rnd.IntN(256), rnd.IntN(256))
		}
		allowlists[name] = al
	}
	return out, allowlists
}

func fleetAllowedPatterns(p int) []string {
	switch p % 3 {
	case 0:
		return []string{"kernel.shm*", "kernel.sem", "kernel.msg*"}
	case 1:
		return []string{"net.core.somaxconn", "net.ipv4.tcp_keepalive_time"}
	}
	return []string{}
}

func TestSharedResultFormat(t *testing.T) {
	cfg := share("leader", leads)
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	shipped := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name}}
	write := func(t *testing.T, current *corev1.ConfigMap, res SharedResult) (*corev1.ConfigMap, int) {
		t.Helper()
		client := fake.NewClientset(current)
		n, err := writeShared(t.Context(), client, cfg, current, res)
		if err != nil {
			t.Fatal(err)
		}
		cm, err := client.CoreV1().ConfigMaps(cfg.Namespace).Get(t.Context(), cfg.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm, n
	}
	nodes, allowlists := fleetResult(300, 12)
	res := encodeShared(nodes, testLabel, allowlists, map[string]time.Time{nodes[0].Name: time.Unix(100, 0)}, "leader", true, time.Unix(200, 0))

	t.Run("a result survives the write and the read unchanged", func(t *testing.T) {
		cm, _ := write(t, shipped, res)
		got, err := parseShared(cm)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, res) {
			t.Errorf("read back %+v\nwant %+v", *got, res)
		}
		if _, ok := cm.BinaryData[SharedBinaryKey]; !ok {
			t.Errorf("binaryData has no %s: %v", SharedBinaryKey, cm.BinaryData)
		}
	})

	legacy := func(res SharedResult) *corev1.ConfigMap {
		data, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		cm := shipped.DeepCopy()
		cm.Data = map[string]string{SharedKey: string(data)}
		return cm
	}

	t.Run("the last release's plain result is still read", func(t *testing.T) {
		got, err := parseShared(legacy(res))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, res) {
			t.Errorf("read %+v\nwant %+v", *got, res)
		}
	})

	t.Run("a write removes the last release's plain result", func(t *testing.T) {
		cm, _ := write(t, legacy(res), res)
		if _, ok := cm.Data[SharedKey]; ok {
			t.Errorf("data still holds %s after a write", SharedKey)
		}
	})

	t.Run("with both formats, the one published last is the result", func(t *testing.T) {
		older, newer := res, res
		older.Leader, older.PublishedAt = "old", metav1.NewTime(time.Unix(300, 0))
		newer.Leader, newer.PublishedAt = "new", metav1.NewTime(time.Unix(400, 0))
		// This release wrote the compressed one, then an older elected replica the plain one.
		cm, _ := write(t, shipped, older)
		cm.Data = legacy(newer).Data
		if got, err := parseShared(cm); err != nil || got.Leader != "new" {
			t.Errorf("parseShared = %+v, %v; want the plain result, published last", got, err)
		}
		// And the other way round.
		cm, _ = write(t, shipped, newer)
		cm.Data = legacy(older).Data
		if got, err := parseShared(cm); err != nil || got.Leader != "new" {
			t.Errorf("parseShared = %+v, %v; want the compressed result, published last", got, err)
		}
	})

	t.Run("a corrupted result is refused with what to do", func(t *testing.T) {
		cm, _ := write(t, shipped, res)
		cm.BinaryData[SharedBinaryKey] = cm.BinaryData[SharedBinaryKey][:len(cm.BinaryData[SharedBinaryKey])/2]
		_, err := parseShared(cm)
		if err == nil || !strings.Contains(err.Error(), "binaryData "+SharedBinaryKey+" is not a discovery result") || !strings.Contains(err.Error(), "delete the key") {
			t.Errorf("err = %v; want one naming the key and saying to delete it", err)
		}
	})

	t.Run("65,000 nodes fit in one ConfigMap", func(t *testing.T) {
		nodes, allowlists := fleetResult(65_000, 200)
		readAt := map[string]time.Time{}
		for i, n := range nodes {
			readAt[n.Name] = time.Unix(int64(1_800_000_000+i), 0)
		}
		res := encodeShared(nodes, testLabel, allowlists, readAt, "leader", true, time.Unix(1_800_100_000, 0))
		plain, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		cm, n := write(t, shipped, res)
		t.Logf("65,000 nodes in 200 pools: plain JSON %d bytes (%.1f a node: the 1 MiB limit at %d nodes); gzip'd %d bytes (%.1f a node: the limit at %d nodes)",
			len(plain), float64(len(plain))/65_000, maxSharedBytes*65_000/len(plain), n, float64(n)/65_000, maxSharedBytes*65_000/n)
		if n > maxSharedBytes {
			t.Errorf("the result is %d bytes, over the %d-byte limit", n, maxSharedBytes)
		}
		got, err := parseShared(cm)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.named()) != 65_000 {
			t.Errorf("read back %d nodes, want 65,000", len(got.named()))
		}
	})

	t.Run("a result over the object limit is not written, with what to do", func(t *testing.T) {
		var nodes []*corev1.Node
		allowlists := map[string]Allowlist{}
		rnd := rand.New(rand.NewPCG(3, 4))
		for i := range 40_000 {
			// Names that do not compress: 60 random characters each.
			b := make([]byte, 60)
			for j := range b {
				b[j] = "abcdefghijklmnopqrstuvwxyz0123456789"[rnd.IntN(36)]
			}
			nodes = append(nodes, node(string(b), fmt.Sprint("pool-", i%10)))
			allowlists[string(b)] = Allowlist{Known: true}
		}
		client := fake.NewClientset(shipped)
		_, err := writeShared(t.Context(), client, cfg, shipped, encodeShared(nodes, testLabel, allowlists, nil, "leader", true, time.Now()))
		if err == nil || !strings.Contains(err.Error(), "the discovery result of 40000 nodes is") || !strings.Contains(err.Error(), "allowlistFrom: annotation") {
			t.Errorf("err = %v; want one naming the size and the way out", err)
		}
	})
}

// TestSharedReaderSeesOneGeneration interleaves a writer publishing generation after
// generation (each node of each generation allows gen.N) with readers: every read must
// be one whole generation, including the first write over the last release's format.
func TestSharedReaderSeesOneGeneration(t *testing.T) {
	cfg := share("leader", leads)
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	nodes, _ := fleetResult(2_000, 20)
	generation := func(g int) SharedResult {
		allowlists := map[string]Allowlist{}
		for _, n := range nodes {
			allowlists[n.Name] = Allowlist{Known: true, Patterns: []string{fmt.Sprintf("gen.%d", g)}}
		}
		return encodeShared(nodes, testLabel, allowlists, nil, "leader", true, time.Unix(int64(1000+g), 0))
	}
	data, err := json.Marshal(generation(0))
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name}, Data: map[string]string{SharedKey: string(data)}})
	configMaps := client.CoreV1().ConfigMaps(cfg.Namespace)

	const generations = 30
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for g := 1; g <= generations; g++ {
			current, err := configMaps.Get(t.Context(), cfg.Name, metav1.GetOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := writeShared(t.Context(), client, cfg, current, generation(g)); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var mu sync.Mutex
	seen := map[string]bool{}
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				cm, err := configMaps.Get(t.Context(), cfg.Name, metav1.GetOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				res, err := parseShared(cm)
				if err != nil {
					t.Error(err)
					return
				}
				gens := map[string]int{}
				for _, al := range res.decode() {
					gens[strings.Join(al.Patterns, ",")]++
				}
				if len(gens) != 1 {
					t.Errorf("a read mixes generations: nodes by allowlist %v", gens)
					return
				}
				for g, n := range gens {
					if n != len(nodes) {
						t.Errorf("a read of %s names %d nodes, want %d", g, n, len(nodes))
					}
					if want := fmt.Sprintf("gen.%d", res.PublishedAt.Unix()-1000); g != want {
						t.Errorf("a read published at %s holds %s, want %s", res.PublishedAt, g, want)
					}
					mu.Lock()
					seen[g] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("the readers saw %d of %d generations", len(seen), generations+1)
}

// TestSharedCorruptResultKeepsTheLast: a replica that reads a corrupted result says so
// and keeps placing with the last good one.
func TestSharedCorruptResultKeepsTheLast(t *testing.T) {
	client := fake.NewClientset()
	if _, err := client.CoreV1().Nodes().Create(t.Context(), node("ipc-1", "ipc"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := share("follower", follows)
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	shipShared(t, client)
	holdLease(t, client, "leader")
	current, err := client.CoreV1().ConfigMaps(cfg.Namespace).Get(t.Context(), cfg.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := encodeShared([]*corev1.Node{node("ipc-1", "ipc")}, testLabel, map[string]Allowlist{"ipc-1": {Known: true, Patterns: []string{"kernel.sem"}}}, nil, "leader", true, time.Now())
	if _, err := writeShared(t.Context(), client, cfg, current, res); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	follower := startReplica(t, client, Config{Prober: &mapProber{allowed: map[string][]string{}}, Share: share("follower", follows), Metrics: NewMetrics(reg)})
	if got := poolAllows(follower, "ipc"); !reflect.DeepEqual(got, []string{"kernel.sem"}) {
		t.Fatalf("ipc allows %v; want [kernel.sem]", got)
	}

	cm, err := client.CoreV1().ConfigMaps(cfg.Namespace).Get(t.Context(), cfg.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.BinaryData[SharedBinaryKey] = []byte("not gzip")
	if _, err := client.CoreV1().ConfigMaps(cfg.Namespace).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the follower counts the corrupted result as invalid", func() bool {
		return sharedIgnored(t, reg, ignoredInvalid) >= 1
	})
	if got := poolAllows(follower, "ipc"); !reflect.DeepEqual(got, []string{"kernel.sem"}) {
		t.Errorf("ipc allows %v after a corrupted result; want [kernel.sem], the last good one", got)
	}
	if !follower.disc.FirstPassDone() {
		t.Error("the follower is no longer ready after a corrupted result")
	}
}

// A read that changes nothing leaves nothing to publish; one that changes the
// allowlist or the error does.
func TestSameAllowlist(t *testing.T) {
	sem := Allowlist{Known: true, Patterns: []string{"kernel.sem"}}
	down := sem
	down.Err = errors.New("connection refused")
	for _, tc := range []struct {
		name string
		a, b Allowlist
		same bool
	}{
		{"the same allowlist read again is the same", sem, Allowlist{Known: true, Patterns: []string{"kernel.sem"}}, true},
		{"no patterns, empty or nil, is the same", Allowlist{Known: true}, Allowlist{Known: true, Patterns: []string{}}, true},
		{"another pattern is a change", sem, Allowlist{Known: true, Patterns: []string{"kernel.sem", "kernel.shmmax"}}, false},
		{"an unreachable kubelet is a change", sem, down, false},
		{"the same error again is the same", down, Allowlist{Known: true, Patterns: []string{"kernel.sem"}, Err: errors.New("connection refused")}, true},
		{"another error is a change", down, Allowlist{Known: true, Patterns: []string{"kernel.sem"}, Err: errors.New("timeout")}, false},
		{"a first read is a change", Allowlist{}, sem, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameAllowlist(tc.a, tc.b); got != tc.same {
				t.Errorf("sameAllowlist(%+v, %+v) = %v, want %v", tc.a, tc.b, got, tc.same)
			}
		})
	}
}

// TestSharedResultIsWrittenOnChange: the elected replica writes the shared result when
// a read changes it, not after every read.
func TestSharedResultIsWrittenOnChange(t *testing.T) {
	client := fake.NewClientset()
	shipShared(t, client)
	holdLease(t, client, "leader")
	for _, n := range []*corev1.Node{node("ipc-1", "ipc"), node("ipc-2", "ipc")} {
		if _, err := client.CoreV1().Nodes().Create(t.Context(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var writes atomic.Int64
	client.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		writes.Add(1)
		return false, nil, nil
	})
	prober := &mapProber{allowed: map[string][]string{"ipc-1": {"kernel.sem"}, "ipc-2": {"kernel.sem"}}}
	leader := startReplica(t, client, Config{Prober: prober, Share: share("leader", leads), Refresh: time.Hour})
	d := leader.disc
	written := func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return !d.dirty
	}
	eventually(t, "the first result is written", written)
	// restart gives the kubelets a new boot ID, so the elected replica reads them again,
	// and waits until it has.
	restart := func(t *testing.T, bootID string, names ...string) {
		t.Helper()
		since := time.Now()
		for _, name := range names {
			n, err := client.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n.Status.NodeInfo.BootID = bootID
			if _, err := client.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, "the kubelets are read again", func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			for _, name := range names {
				if !d.readAt[name].After(since) {
					return false
				}
			}
			return true
		})
	}
	before := writes.Load()

	t.Run("kubelets read again allowing the same leave nothing to write", func(t *testing.T) {
		restart(t, "boot-2", "ipc-1", "ipc-2")
		if !written() || writes.Load() != before {
			t.Errorf("after reads that changed nothing: %d writes, result still to write %v; want none", writes.Load()-before, !written())
		}
	})

	t.Run("a kubelet that allows something else is written", func(t *testing.T) {
		prober.set("ipc-1", "kernel.sem", "kernel.shmmax")
		restart(t, "boot-3", "ipc-1")
		eventually(t, "the change is written", func() bool { return writes.Load() > before && written() })
		res := readShared(t, client)
		if got := res.decode()["ipc-1"].Patterns; !reflect.DeepEqual(got, []string{"kernel.sem", "kernel.shmmax"}) {
			t.Errorf("the published ipc-1 allows %v; want [kernel.sem kernel.shmmax]", got)
		}
	})
}
