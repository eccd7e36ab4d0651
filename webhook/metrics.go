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
			Help: "Objects the webhooks rejected, by outcome (Unplaceable, Conflict; Forbidden: by the namespace's Pod Security level, denied by the mutating webhook).",
		}, []string{"outcome"}),
		certificateExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_certificate_expiry_timestamp_seconds",
			Help: "Unix time at which the serving certificate in force expires (NotAfter of its leaf).",
		}),
	}
	reg.MustRegister(m.placements, m.hostNamespace, m.denials, m.certificateExpiry)
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
