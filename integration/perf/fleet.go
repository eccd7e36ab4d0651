package perf

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// FleetOptions shape a discovery-at-scale run (RunFleet).
type FleetOptions struct {
	// Nodes in Pools pools, each node's /configz served by one KubeletFarm.
	Nodes, Pools int
	// Namespaces besides the opted-in one the admission load uses.
	Namespaces int
	// Replicas of serve; the first starts alone, on a cluster with no shared result.
	Replicas int
	// QPS and Refresh are serve's --discovery-qps and --discovery-refresh.
	QPS     float64
	Refresh time.Duration
	// Window is how long probes are counted, with one replica and with all.
	Window time.Duration
	// LoadRate requests/s of admission load for LoadDuration, sent to the elected
	// replica while it reads kubelets.
	LoadRate     int
	LoadDuration time.Duration
	// Work holds certificates, the config and the replicas' logs.
	Work string
	// HeapProfiles, when set, is a directory that receives each replica's heap profile
	// (serve --profiling) where their memory is measured.
	HeapProfiles string
	// Logf reports progress; nil reports nothing.
	Logf func(format string, args ...any)
}

// FleetRates are probes and the reviews they caused, per second, over a window.
type FleetRates struct {
	Replicas                      int           `json:"replicas"`
	Window                        time.Duration `json:"window"`
	ProbesPerSecond               float64       `json:"probesPerSecond"`
	TokenReviewsPerSecond         float64       `json:"tokenReviewsPerSecond"`
	SubjectAccessReviewsPerSecond float64       `json:"subjectAccessReviewsPerSecond"`
}

// FleetResult is what RunFleet measured.
type FleetResult struct {
	Started    time.Time     `json:"started"`
	Nodes      int           `json:"nodes"`
	Pools      int           `json:"pools"`
	Namespaces int           `json:"namespaces"`
	Replicas   int           `json:"replicas"`
	QPS        float64       `json:"qps"`
	Refresh    time.Duration `json:"refresh"`
	// SetupTime is how long creating the Nodes and namespaces took.
	SetupTime time.Duration `json:"setupTime"`
	// FirstInstallReady: the first replica on a cluster without a shared result is
	// elected and ready once it has read every kubelet.
	FirstInstallReady time.Duration `json:"firstInstallReady"`
	// FollowerReady: each further replica, ready from the shared result.
	FollowerReady []time.Duration `json:"followerReady"`
	// RestartedReady: a replica stopped and started again.
	RestartedReady time.Duration `json:"restartedReady"`
	// RestartedProbes: kubelets the restarted replica read before it was ready.
	RestartedProbes float64 `json:"restartedProbes"`
	// OneReplica and AllReplicas: probes and reviews while the elected replica reads.
	OneReplica  FleetRates `json:"oneReplica"`
	AllReplicas FleetRates `json:"allReplicas"`
	// PublishedBytes is the size of the shared result (the ConfigMap's data and
	// binaryData) once the first replica is ready.
	PublishedBytes int `json:"publishedBytes"`
	// RSS and HWM of each replica at the end, bytes.
	RSS []uint64 `json:"rss"`
	HWM []uint64 `json:"hwm"`
	// Admission is the load sent to the elected replica while it read kubelets, and
	// ProbesDuringLoad the kubelets read meanwhile.
	Admission        LoadResult `json:"admission"`
	ProbesDuringLoad int64      `json:"probesDuringLoad"`
}

// fleetConfig has no static pool: every pool is discovered from the farm's kubelets.
const fleetConfig = `apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
discovery:
  poolLabel: ` + cluster.PoolLabel + `
  allowlistFrom: configz
`

// fleetAllowed is what the kubelets of pool p allow: a third allow what the benchmark
// pod (DeploymentPod) asks for, so its admissions are placed and patched.
func fleetAllowed(p int) []string {
	switch p % 3 {
	case 0:
		return []string{"kernel.shm*", "kernel.sem"}
	case 1:
		return []string{"net.core.somaxconn"}
	}
	return nil
}

type fleetReplica struct {
	name       string
	proc       *process.Process
	metricsURL string
	admitURL   string
}

// RunFleet measures discovery at scale on c: Nodes whose /configz a KubeletFarm
// serves, Namespaces namespaces, and Replicas serve processes run as the shipped
// ServiceAccount with the shipped RBAC and the default --leader-elect.
func RunFleet(ctx context.Context, c *cluster.Cluster, o FleetOptions) (*FleetResult, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Nodes <= 0 || o.Pools <= 0 || o.Nodes < o.Pools || o.Replicas < 2 || o.QPS <= 0 || o.Refresh <= 0 || o.Window <= 0 || o.LoadRate <= 0 || o.LoadDuration <= 0 {
		return nil, fmt.Errorf("fleet options %+v: nodes ≥ pools > 0, replicas ≥ 2 and positive qps, refresh, window, load rate and duration are required", o)
	}
	res := &FleetResult{Started: time.Now().UTC(), Nodes: o.Nodes, Pools: o.Pools, Namespaces: o.Namespaces, Replicas: o.Replicas, QPS: o.QPS, Refresh: o.Refresh}
	id, err := c.ApplyShippedIdentity(ctx)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 1000, 2000
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}

	perPool := o.Nodes / o.Pools
	pool := func(i int) int { return min(i/perPool, o.Pools-1) }
	names := make([]string, o.Nodes)
	for i := range names {
		names[i] = fmt.Sprintf("fleet-%02d-%05d", pool(i), i)
	}
	farm, err := StartKubeletFarm(admin, o.Work, names, func(i int) []string { return fleetAllowed(pool(i)) })
	if err != nil {
		return nil, err
	}
	defer farm.Close()
	setup := time.Now()
	err = Parallel(ctx, o.Nodes, 16, func(i int) error {
		nodes := admin.CoreV1().Nodes()
		n, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: names[i], Labels: map[string]string{
			cluster.PoolLabel: fmt.Sprintf("fleet-%02d", pool(i)), corev1.LabelHostname: names[i], corev1.LabelOSStable: "linux",
		}}}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("could not create node %s: %w", names[i], err)
		}
		// The node lifecycle controller may write the new Node (its taints) first: on a
		// conflict, post the status again on the latest version.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			n.Status = farm.FarmNodeStatus(i, "v1.37.2", "6.8.0")
			_, err := nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				if latest, getErr := nodes.Get(ctx, names[i], metav1.GetOptions{}); getErr == nil {
					n = latest
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("could not post the status of node %s: %w", names[i], err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := CreateNamespaces(ctx, admin, o.Namespaces); err != nil {
		return nil, err
	}
	const loadNamespace = "perf"
	if err := CreateOptedInNamespace(ctx, admin, loadNamespace); err != nil {
		return nil, err
	}
	res.SetupTime = time.Since(setup)
	logf("created %d nodes in %d pools and %d namespaces in %s", o.Nodes, o.Pools, o.Namespaces+1, res.SetupTime.Round(time.Second))

	bin, err := cluster.SysctlPlacement.Path()
	if err != nil {
		return nil, err
	}
	tlsDir := filepath.Join(o.Work, "fleet-tls")
	roots, err := servingCerts(ctx, bin, tlsDir)
	if err != nil {
		return nil, err
	}
	configFile := filepath.Join(o.Work, "fleet-config.yaml")
	if err := os.WriteFile(configFile, []byte(fleetConfig), 0o600); err != nil {
		return nil, err
	}
	plain := &http.Client{Timeout: 5 * time.Second}
	// The first install reads every kubelet before it is ready: twice the time the
	// QPS allows, plus a minute for a slow machine.
	readyTimeout := time.Duration(float64(o.Nodes)/o.QPS*2)*time.Second + time.Minute
	start := func(name string) (*fleetReplica, time.Duration, error) {
		wh, err := cluster.StartServe(ctx, cluster.ServeOptions{
			Bin: bin, Name: name, LogDir: o.Work, ReadyTimeout: readyTimeout,
			Flags: cluster.ServeFlags{
				Config: configFile, CertDir: tlsDir, Kubeconfig: id.Kubeconfig,
				Extra: []string{"--kubelet-ca-file", farm.CAFile,
					"--discovery-qps", fmt.Sprint(o.QPS), "--discovery-refresh", o.Refresh.String(),
					"--shutdown-grace", "5s", "--shutdown-delay", "0s", "--profiling"},
			},
		})
		if err != nil {
			return nil, 0, err
		}
		return &fleetReplica{name: name, proc: wh.Process(), metricsURL: wh.MetricsURL, admitURL: wh.URL}, wh.Ready, nil
	}
	var replicas []*fleetReplica
	defer func() {
		for _, r := range replicas {
			_ = r.proc.Stop(10 * time.Second)
		}
	}()
	first, took, err := start("fleet-1")
	if err != nil {
		return nil, err
	}
	replicas = append(replicas, first)
	res.FirstInstallReady = took
	logf("first replica (no shared result yet) ready after %s", took.Round(100*time.Millisecond))
	shared, err := admin.CoreV1().ConfigMaps(id.Namespace).Get(ctx, "sysctl-placement-discovery", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("could not read the published discovery result: %w", err)
	}
	for _, v := range shared.Data {
		res.PublishedBytes += len(v)
	}
	for _, v := range shared.BinaryData {
		res.PublishedBytes += len(v)
	}
	logf("published result: %d bytes (%.1f a node)", res.PublishedBytes, float64(res.PublishedBytes)/float64(o.Nodes))
	if res.OneReplica, err = countRates(ctx, farm, 1, o.Window); err != nil {
		return nil, err
	}
	logf("1 replica: %.1f probes/s, %.1f TokenReviews/s, %.1f SubjectAccessReviews/s", res.OneReplica.ProbesPerSecond, res.OneReplica.TokenReviewsPerSecond, res.OneReplica.SubjectAccessReviewsPerSecond)
	for i := 2; i <= o.Replicas; i++ {
		r, took, err := start(fmt.Sprintf("fleet-%d", i))
		if err != nil {
			return nil, err
		}
		replicas = append(replicas, r)
		res.FollowerReady = append(res.FollowerReady, took)
		logf("replica %d ready after %s", i, took.Round(100*time.Millisecond))
	}
	if res.AllReplicas, err = countRates(ctx, farm, o.Replicas, o.Window); err != nil {
		return nil, err
	}
	logf("%d replicas: %.1f probes/s, %.1f TokenReviews/s, %.1f SubjectAccessReviews/s", o.Replicas, res.AllReplicas.ProbesPerSecond, res.AllReplicas.TokenReviewsPerSecond, res.AllReplicas.SubjectAccessReviewsPerSecond)

	// Memory while the elected replica reads kubelets, before any admission load.
	for _, r := range replicas {
		s, err := process.ReadSample(r.proc.Pid())
		if err != nil {
			return nil, err
		}
		res.RSS, res.HWM = append(res.RSS, s.RSS), append(res.HWM, s.HWM)
	}
	logf("RSS of the replicas (MiB): %v; peaks: %v", mibs(res.RSS), mibs(res.HWM))
	for _, r := range replicas {
		var vals []string
		for _, m := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines"} {
			v, _ := scrape(ctx, plain, r.metricsURL, m)
			if strings.HasSuffix(m, "_bytes") {
				v /= 1 << 20
			}
			vals = append(vals, fmt.Sprintf("%s=%.1f", strings.TrimPrefix(m, "go_memstats_"), v))
		}
		logf("%s: %v (bytes in MiB)", r.name, vals)
		if o.HeapProfiles != "" {
			if err := saveHeapProfile(ctx, plain, r.metricsURL, filepath.Join(o.HeapProfiles, r.name+".heap.pprof")); err != nil {
				return nil, err
			}
		}
	}

	// Admission load on the elected replica while it reads kubelets (a full pass takes
	// Nodes/QPS; with Refresh shorter than that it never stops).
	leader := replicas[0]
	for _, r := range replicas {
		if v, err := scrape(ctx, plain, r.metricsURL, "sysctl_placement_discovery_leader"); err == nil && v == 1 {
			leader = r
		}
	}
	reviews, err := CreateReviews(loadNamespace, 64)
	if err != nil {
		return nil, err
	}
	loader, err := NewLoader(Scenario{Name: fmt.Sprintf("open-%d", o.LoadRate), Mode: Open, Clients: 64, Rate: o.LoadRate,
		Duration: o.LoadDuration, MaxRequests: o.LoadRate * int(o.LoadDuration/time.Second+1), Warmup: time.Second},
		Target{Name: "serve", URL: leader.admitURL + "/mutate?timeout=10s", RootCAs: roots, ExpectPatch: true}, reviews)
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	if err := loader.Warmup(ctx); err != nil {
		return nil, err
	}
	before := farm.Counts().Probes
	if res.Admission, err = loader.Measure(ctx); err != nil {
		return nil, err
	}
	res.ProbesDuringLoad = farm.Counts().Probes - before
	res.Admission.LoadAverage, _ = LoadAverage()
	logf("admission on the elected replica (%s) during %d probes: p50 %s, p99 %s, %d errors of %d; load average %.1f",
		leader.name, res.ProbesDuringLoad, res.Admission.P50, res.Admission.P99, res.Admission.Errors, res.Admission.Requests, res.Admission.LoadAverage)

	// Restart a replica that is not the elected one.
	victim := len(replicas) - 1
	if replicas[victim] == leader {
		victim--
	}
	if err := replicas[victim].proc.Stop(10 * time.Second); err != nil {
		return nil, err
	}
	r, took, err := start(replicas[victim].name + "-restarted")
	if err != nil {
		return nil, err
	}
	replicas[victim] = r
	res.RestartedReady = took
	if res.RestartedProbes, err = scrape(ctx, plain, r.metricsURL, "sysctl_placement_discovery_configz_probes_total"); err != nil {
		return nil, err
	}
	logf("restarted replica ready after %s, having read %.0f kubelets", took.Round(100*time.Millisecond), res.RestartedProbes)
	return res, nil
}

// saveHeapProfile writes serve's /debug/pprof/heap (after a GC) to path.
func saveHeapProfile(ctx context.Context, client *http.Client, metricsURL, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("could not read the heap profile: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// countRates counts the farm's probes and reviews over window.
func countRates(ctx context.Context, farm *KubeletFarm, replicas int, window time.Duration) (FleetRates, error) {
	before, started := farm.Counts(), time.Now()
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return FleetRates{}, ctx.Err()
	case <-t.C:
	}
	after, secs := farm.Counts(), time.Since(started).Seconds()
	return FleetRates{
		Replicas: replicas, Window: window,
		ProbesPerSecond:               float64(after.Probes-before.Probes) / secs,
		TokenReviewsPerSecond:         float64(after.TokenReviews-before.TokenReviews) / secs,
		SubjectAccessReviewsPerSecond: float64(after.SubjectAccessReviews-before.SubjectAccessReviews) / secs,
	}, nil
}

// scrape sums the samples of a metric on a replica's /metrics.
func scrape(ctx context.Context, client *http.Client, metricsURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return MetricSum(string(body), name), nil
}

func mibs(bs []uint64) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = fmt.Sprintf("%.1f", float64(b)/(1<<20))
	}
	return out
}
