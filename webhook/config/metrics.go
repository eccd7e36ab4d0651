package config

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts configuration loads.
type Metrics struct {
	reloads *prometheus.CounterVec
}

// NewMetrics registers the counter on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_config_reloads_total",
			Help: "Configuration file loads, by result (success, invalid, unreadable: the file is gone or cannot be read; the last good config stays in force).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.reloads)
	return m
}

// observeLoad counts one load of a readable file: valid or not.
func (m *Metrics) observeLoad(ok bool) {
	if m == nil {
		return
	}
	result := "success"
	if !ok {
		result = "invalid"
	}
	m.reloads.WithLabelValues(result).Inc()
}

func (m *Metrics) observeUnreadable() {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues("unreadable").Inc()
}
