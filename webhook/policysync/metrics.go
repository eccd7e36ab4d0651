package policysync

import "github.com/prometheus/client_golang/prometheus"

// Metrics say whether the policy backend is in force. A nil *Metrics counts nothing.
type Metrics struct {
	active  prometheus.Gauge
	refused *prometheus.CounterVec
	applies *prometheus.CounterVec
}

// NewMetrics registers the policy backend's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_policy_backend_active",
			Help: "1 while the admission policies in force are the current configuration's (serve --admission=policy, on the replica that syncs them); 0 when they are refused: the webhook must place pods then (see sysctl_placement_policy_refused_total and `sysctl-placement pools`).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_policy_refused_total",
			Help: "Times the policy backend went out of force, by reason (ServerVersion, Cost, Render, Apply).",
		}, []string{"reason"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_policy_applies_total",
			Help: "Server-side applies of an admission policy or binding, by kind: only a changed rendering, or an object someone else changed, is applied.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.active, m.refused, m.applies)
	return m
}

func (m *Metrics) init() {
	if m == nil {
		return
	}
	for _, r := range Reasons {
		m.refused.WithLabelValues(r)
	}
}

func (m *Metrics) setActive(active bool) {
	if m == nil {
		return
	}
	v := 0.0
	if active {
		v = 1
	}
	m.active.Set(v)
}

func (m *Metrics) observeRefused(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) observeApply(kind string) {
	if m != nil {
		m.applies.WithLabelValues(kind).Inc()
	}
}
