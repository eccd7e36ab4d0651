package webhook

import (
	"crypto/tls"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Metrics counts what the webhook did. Label values are bounded: pool names come from
// the admin's configuration, fields and modes from fixed sets.
type Metrics struct {
	placements    *prometheus.CounterVec
	hostNamespace *prometheus.CounterVec
	denials       *prometheus.CounterVec
	// certificateExpiry lets an alert fire weeks before the serving certificate
	// expires, whatever renews it (the certs CronJob or cert-manager).
	certificateExpiry prometheus.Gauge
	// admissionsInFlight, admissionsQueued and admissionsThrottled show AdmissionLimit
	// at work: a replica that queues or throttles often needs a higher
	// --max-concurrent-admissions (and memory) or another replica.
	admissionsInFlight  prometheus.Gauge
	admissionsQueued    prometheus.Counter
	admissionsThrottled prometheus.Counter
}

// NewMetrics registers the counters on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_placements_total",
			Help: "Pods placed on a pool (a pod placed on several candidate pools counts once per pool).",
		}, []string{"pool"}),
		hostNamespace: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_host_namespace_clashes_total",
			Help: "Host-namespace clashes with namespaced sysctls, by field (" + strings.Join(scheduling.HostNamespaceFields(), ", ") +
				") and how they were resolved (" + strings.Join(scheduling.ClashModeNames(), ", ") + ").",
		}, []string{"field", "mode"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_denials_total",
			Help: "Objects the webhooks rejected, by outcome (Unplaceable, Conflict; Forbidden: by the namespace's Pod Security level, and OverLimit: beyond the sysctl limits, both denied by the mutating webhook).",
		}, []string{"outcome"}),
		certificateExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_certificate_expiry_timestamp_seconds",
			Help: "Unix time at which the serving certificate in force expires (NotAfter of its leaf).",
		}),
		admissionsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_admissions_in_flight",
			Help: "Admission reviews being decoded and answered now (at most --max-concurrent-admissions).",
		}),
		admissionsQueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sysctl_placement_admissions_queued_total",
			Help: "Admission reviews that had to wait for a free slot because --max-concurrent-admissions reviews were in progress (answered or throttled after).",
		}),
		admissionsThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sysctl_placement_admissions_throttled_total",
			Help: "Admission reviews answered 429 with Retry-After (the API server retries within its webhook timeout) because no slot freed within the queue wait.",
		}),
	}
	reg.MustRegister(m.placements, m.hostNamespace, m.denials, m.certificateExpiry, m.admissionsInFlight, m.admissionsQueued, m.admissionsThrottled)
	return m
}

func (m *Metrics) observeMutation(d *scheduling.Decision) {
	if m == nil {
		return
	}
	if d.Outcome == scheduling.OutcomeChanged {
		for _, p := range d.Audit.Pools {
			m.placements.WithLabelValues(p).Inc()
		}
	}
	for _, c := range d.Audit.HostNamespaces {
		m.hostNamespace.WithLabelValues(c.Field, string(c.Mode)).Inc()
	}
	for _, c := range d.Audit.Flagged {
		m.hostNamespace.WithLabelValues(c.Field, string(c.Mode)).Inc()
	}
}

func (m *Metrics) observeDenial(d *scheduling.Decision) {
	if m == nil {
		return
	}
	m.denials.WithLabelValues(string(d.Outcome)).Inc()
}

// ObserveServingCertificate records the expiry of the certificate that came into
// force; it is meant for certs.ReloaderConfig.OnReload.
func (m *Metrics) ObserveServingCertificate(cert *tls.Certificate) {
	if m == nil || cert == nil || cert.Leaf == nil {
		return
	}
	m.certificateExpiry.Set(float64(cert.Leaf.NotAfter.Unix()))
}

func (m *Metrics) observeAdmissionStarted() {
	if m == nil {
		return
	}
	m.admissionsInFlight.Inc()
}

func (m *Metrics) observeAdmissionQueued() {
	if m == nil {
		return
	}
	m.admissionsQueued.Inc()
}

func (m *Metrics) observeAdmissionDone() {
	if m == nil {
		return
	}
	m.admissionsInFlight.Dec()
}

func (m *Metrics) observeAdmissionThrottled() {
	if m == nil {
		return
	}
	m.admissionsThrottled.Inc()
}
