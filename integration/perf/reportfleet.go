package perf

import (
	"fmt"
	"io"
	"time"
)

// Targets of discovery at scale.
const (
	maxFleetReady = 10 * time.Second
	maxFleetRSS   = 96 << 20
)

// readFleet reads perf/cmd/fleet's JSON; no path, no section.
func readFleet(path string) (*FleetResult, error) {
	return readOptional[FleetResult](path, "perf/cmd/fleet")
}

func fleetTargets(f *FleetResult) []target {
	ready := target{name: fmt.Sprintf("discovery at scale: a replica is ready ≤ %s after start", maxFleetReady), measured: "not measured", verdict: "—"}
	rss := target{name: "discovery at scale: RSS of each replica < 96 MiB", measured: "not measured", verdict: "—"}
	if f == nil {
		return []target{ready, rss}
	}
	ready.name = fmt.Sprintf("discovery at scale (%d nodes): a joining or restarted replica is ready ≤ %s after start", f.Nodes, maxFleetReady)
	ready.measured = fmt.Sprintf("%.1f s (slowest of %d)", FleetReady(f).Seconds(), len(f.FollowerReady)+1)
	ready.verdict = verdict(FleetReady(f) <= maxFleetReady)
	// Judged on the peak (VmHWM), not only the RSS when sampled: a limit is hit at the peak.
	var worst, peak uint64
	for i := range f.RSS {
		worst, peak = max(worst, f.RSS[i]), max(peak, f.HWM[i])
	}
	rss.name = fmt.Sprintf("discovery at scale (%d nodes, %d namespaces): RSS of each replica < 96 MiB, peak included", f.Nodes, f.Namespaces)
	rss.measured = fmt.Sprintf("%.1f MiB, peak %.1f MiB (largest of %d)", float64(worst)/(1<<20), float64(peak)/(1<<20), len(f.RSS))
	rss.verdict = verdict(peak < maxFleetRSS)
	return []target{ready, rss}
}

func renderFleet(w io.Writer, f *FleetResult) {
	if f != nil {
		WriteFleetSection(w, f)
	}
}
