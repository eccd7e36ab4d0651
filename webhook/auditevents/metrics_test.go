package auditevents

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	// Before any Event is dropped or skipped, each cause already has a series at 0, so
	// an alert on increase() of the counter sees the first drop.
	t.Run("every drop and skip cause is exported from the start", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		NewMetrics(reg)
		want := `
# HELP sysctl_placement_events_dropped_total Events lost, by cause (queue_full, too_many_workloads, write_failed, oversized, namespace_budget).
# TYPE sysctl_placement_events_dropped_total counter
sysctl_placement_events_dropped_total{cause="namespace_budget"} 0
sysctl_placement_events_dropped_total{cause="oversized"} 0
sysctl_placement_events_dropped_total{cause="queue_full"} 0
sysctl_placement_events_dropped_total{cause="too_many_workloads"} 0
sysctl_placement_events_dropped_total{cause="write_failed"} 0
# HELP sysctl_placement_events_skipped_total Events deliberately not written, by cause (already_recorded, repeated, pod_too_old, invalid_audit, not_admitted).
# TYPE sysctl_placement_events_skipped_total counter
sysctl_placement_events_skipped_total{cause="already_recorded"} 0
sysctl_placement_events_skipped_total{cause="invalid_audit"} 0
sysctl_placement_events_skipped_total{cause="not_admitted"} 0
sysctl_placement_events_skipped_total{cause="pod_too_old"} 0
sysctl_placement_events_skipped_total{cause="repeated"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sysctl_placement_events_dropped_total", "sysctl_placement_events_skipped_total"); err != nil {
			t.Error(err)
		}
	})
}
