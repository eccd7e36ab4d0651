package auditevents

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what happened to Events. Label values come from fixed sets.
type Metrics struct {
	recorded *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	leader   prometheus.Gauge
}

// Causes in sysctl_placement_events_skipped_total and _dropped_total.
var (
	skipCauses = []string{SkipAlreadyRecorded, SkipRepeated, SkipPodTooOld, SkipInvalidAudit, SkipNotAdmitted}
	dropCauses = []string{DropQueueFull, DropTooManyWorkloads, DropWriteFailed, DropOversized, DropNamespaceBudget}
)

const (
	// SkipAlreadyRecorded: the API server already had the Event (another replica, or
	// this one before a restart, created it).
	SkipAlreadyRecorded = "already_recorded"
	// SkipRepeated: the same workload and reason was reported within the interval.
	SkipRepeated = "repeated"
	// SkipPodTooOld: the pod is older than MaxPodAge; its Event may have expired.
	SkipPodTooOld = "pod_too_old"
	// SkipInvalidAudit: the placement annotation is missing or not the audit JSON.
	SkipInvalidAudit = "invalid_audit"
	// SkipNotAdmitted: the pod carries a placement annotation that parses, but not the
	// fields it claims were added: anyone who creates pods can set our label and
	// annotation, and such a forgery is no placement of ours.
	SkipNotAdmitted = "not_admitted"
	// DropQueueFull: the admission path found the queue full.
	DropQueueFull = "queue_full"
	// DropTooManyWorkloads: too many workloads are being deduplicated at once.
	DropTooManyWorkloads = "too_many_workloads"
	// DropWriteFailed: the API server refused the Event or kept failing.
	DropWriteFailed = "write_failed"
	// DropOversized: a placed pod's annotation is larger than any the webhook writes
	// (MaxPlacementAnnotationBytes); it is neither kept nor read.
	DropOversized = "oversized"
	// DropNamespaceBudget: the namespace has spent its budget of Events (a flood of
	// placed or denied pods in it); other namespaces are not affected.
	DropNamespaceBudget = "namespace_budget"
)

// NewMetrics registers the counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_events_recorded_total",
			Help: "Events the API server accepted, by reason.",
		}, []string{"reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_events_skipped_total",
			Help: "Events deliberately not written, by cause (already_recorded, repeated, pod_too_old, invalid_audit, not_admitted).",
		}, []string{"cause"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_events_dropped_total",
			Help: "Events lost, by cause (queue_full, too_many_workloads, write_failed, oversized, namespace_budget).",
		}, []string{"cause"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_events_leader",
			Help: "1 while this replica holds the audit-events lease and records pod Events.",
		}),
	}
	reg.MustRegister(m.recorded, m.skipped, m.dropped, m.leader)
	// Every cause is exported at 0 from the start: an alert on
	// increase(sysctl_placement_events_dropped_total[...]) sees the first drop only if
	// the series existed before it.
	for _, cause := range skipCauses {
		m.skipped.WithLabelValues(cause)
	}
	for _, cause := range dropCauses {
		m.dropped.WithLabelValues(cause)
	}
	return m
}

func (m *Metrics) observeRecorded(reason string) {
	if m != nil {
		m.recorded.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) observeSkipped(cause string) {
	if m != nil {
		m.skipped.WithLabelValues(cause).Inc()
	}
}

func (m *Metrics) observeDropped(cause string) {
	if m != nil {
		m.dropped.WithLabelValues(cause).Inc()
	}
}

func (m *Metrics) setLeader(leading bool) {
	if m == nil {
		return
	}
	v := 0.0
	if leading {
		v = 1
	}
	m.leader.Set(v)
}
