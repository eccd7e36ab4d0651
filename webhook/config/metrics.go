package config

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts configuration loads.
type Metrics struct {
	reloads *prometheus.CounterVec
	// lastOK and lastOKTime are what an alert needs about reloads: a counter of
	// refusals cannot say whether the refused edit has since been fixed.
	lastOK     prometheus.Gauge
	lastOKTime prometheus.Gauge
}

// NewMetrics registers the counter on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sysctl_placement_config_reloads_total",
			Help: "Configuration file loads, by result (success, invalid, unreadable: the file is gone or cannot be read; the last good config stays in force).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_config_last_reload_successful",
			Help: "1 when the config file as it reads now is in force, 0 while it is refused or unreadable and the last good config is in force.",
		}),
		lastOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sysctl_placement_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config load.",
		}),
	}
	reg.MustRegister(m.reloads, m.lastOK, m.lastOKTime)
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
	m.observeInForce(ok)
}

func (m *Metrics) observeUnreadable() {
	if m == nil {
		return
	}
	m.reloads.WithLabelValues("unreadable").Inc()
	m.lastOK.Set(0)
}

// observeInForce sets the last-reload gauges: ok means the file as it now reads is
// the config in force.
func (m *Metrics) observeInForce(ok bool) {
	if m == nil {
		return
	}
	if !ok {
		m.lastOK.Set(0)
		return
	}
	m.lastOK.Set(1)
	m.lastOKTime.Set(float64(time.Now().UnixNano()) / 1e9)
}
