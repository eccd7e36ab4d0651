package discovery

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics tell how discovery is doing. Label values are bounded: sources, problem kinds
// and probe results are fixed sets.
type Metrics struct {
	pools     *prometheus.GaugeVec
	poolNodes *prometheus.GaugeVec
	problems  *prometheus.GaugeVec
	nodes     prometheus.Gauge
	probes    *prometheus.CounterVec
	// leader, published and sharedAt concern the shared result (ShareConfig).
	leader    prometheus.Gauge
	published prometheus.Counter
	sharedAt  prometheus.Gauge
	ignored   *prometheus.CounterVec
	// writeFailures: the elected replica's failed writes of the shared result.
	writeFailures *prometheus.CounterVec
}

// Reasons a replica ignores a shared result (the reason label of
// sysctl_placement_discovery_shared_ignored_total).
const (
	// ignoredNotLeaseHolder: the result names a leader that does not hold the Lease.
	ignoredNotLeaseHolder = "NotLeaseHolder"
	// ignoredInvalid: the ConfigMap holds no readable result.
	ignoredInvalid = "Invalid"
)

// Reasons a write of the shared result fails (the reason label of
// sysctl_placement_discovery_shared_write_failures_total).
const (
	// writeFailedMissing: the ConfigMap does not exist; serve never creates it, the
	// manifests ship it.
	writeFailedMissing = "ConfigMapMissing"
	// writeFailedError: any other failure (a conflict, RBAC, the API server).
	writeFailedError = "Error"
)

// NewMetrics registers discovery's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		pools: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sysctl_placement_discovery_pools",
			Help: "Pools in the placement table, by source (config, configz, annotation); discovered pools overridden by the config are not counted.",
		}, []string{"source"}),
		poolNodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sysctl_placement_pool_nodes",
			Help: "Nodes each pool's nodeSelector matches; 0 for a config pool that matches no node (scaled to zero, or its labels are wrong). Alert on a pool that stays at 0.",
		}, []string{"pool"}),
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sysctl_placement_discovery_problems",
			Help: "Current pool problems by kind (" + problemKindNames() + "); see `sysctl-placement pools`.",
		}, []string{"kind"}),
		nodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_discovery_nodes",
			Help: "Nodes in the discovery cache.",
		}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_discovery_configz_probes_total",
			Help: "Reads of kubelets' /configz, by result (success, failure).",
		}, []string{"result"}),
	}
	m.leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sysctl_placement_discovery_leader",
		Help: "1 while this replica is the one reading every kubelet and publishing the shared result.",
	})
	m.published = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sysctl_placement_discovery_shared_writes_total",
		Help: "Writes of the shared discovery result (ConfigMap " + SharedName + ") by this replica.",
	})
	m.sharedAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sysctl_placement_discovery_shared_published_timestamp_seconds",
		Help: "When the shared discovery result this replica uses was published (Unix time); time() minus it is its age, which grows when no replica leads.",
	})
	m.ignored = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sysctl_placement_discovery_shared_ignored_total",
		Help: "Shared discovery results this replica ignored, by reason (NotLeaseHolder: written by a replica or anyone else not holding the Lease " + SharedName + "; Invalid: unreadable). The last accepted result stays in force.",
	}, []string{"reason"})
	for _, r := range []string{ignoredNotLeaseHolder, ignoredInvalid} {
		m.ignored.WithLabelValues(r)
	}
	m.writeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sysctl_placement_discovery_shared_write_failures_total",
		Help: "Failed writes of the shared discovery result by the elected replica, each tried again every publish interval, by reason (ConfigMapMissing: the ConfigMap " + SharedName + " does not exist; serve never creates it, re-apply the manifests that ship it; Error: any other).",
	}, []string{"reason"})
	for _, r := range []string{writeFailedMissing, writeFailedError} {
		m.writeFailures.WithLabelValues(r)
	}
	reg.MustRegister(m.pools, m.poolNodes, m.problems, m.nodes, m.probes, m.leader, m.published, m.sharedAt, m.ignored, m.writeFailures)
	return m
}

func (m *Metrics) observeReport(report []PoolStatus) {
	if m == nil {
		return
	}
	pools := map[Source]int{SourceConfig: 0, SourceConfigz: 0, SourceAnnotation: 0}
	problems := map[ProblemKind]int{}
	for _, k := range ProblemKinds {
		problems[k] = 0
	}
	for i := range report {
		if report[i].Usable() {
			pools[report[i].Source]++
		}
		for _, p := range report[i].Problems {
			problems[p.Kind]++
		}
	}
	// One series per pool in use (a discovered pool the config overrides shares its
	// name); a pool removed from the config loses its series.
	m.poolNodes.Reset()
	for i := range report {
		if report[i].Usable() {
			m.poolNodes.WithLabelValues(report[i].Pool.Name).Set(float64(report[i].Nodes))
		}
	}
	for s, n := range pools {
		m.pools.WithLabelValues(string(s)).Set(float64(n))
	}
	for k, n := range problems {
		m.problems.WithLabelValues(string(k)).Set(float64(n))
	}
}

func (m *Metrics) observeProbe(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.probes.WithLabelValues("failure").Inc()
		return
	}
	m.probes.WithLabelValues("success").Inc()
}

func (m *Metrics) setLeader(leading bool) {
	if m == nil {
		return
	}
	if leading {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

func (m *Metrics) observePublish() {
	if m == nil {
		return
	}
	m.published.Inc()
}

func (m *Metrics) observeShared(at time.Time) {
	if m == nil {
		return
	}
	m.sharedAt.Set(float64(at.UnixNano()) / 1e9)
}

func (m *Metrics) observeSharedIgnored(reason string) {
	if m == nil {
		return
	}
	m.ignored.WithLabelValues(reason).Inc()
}

func (m *Metrics) observeSharedWriteFailure(missing bool) {
	if m == nil {
		return
	}
	if missing {
		m.writeFailures.WithLabelValues(writeFailedMissing).Inc()
		return
	}
	m.writeFailures.WithLabelValues(writeFailedError).Inc()
}

func (m *Metrics) observeNodes(n int) {
	if m == nil {
		return
	}
	m.nodes.Set(float64(n))
}

// problemKindNames is ProblemKinds as "NodesDisagree, KubeletUnreachable, ...".
func problemKindNames() string {
	names := make([]string, len(ProblemKinds))
	for i, k := range ProblemKinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}
