package perf

import (
	"slices"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// Results is everything one load run measured; perf/cmd/load writes it as JSON and
// perf/cmd/report turns it into docs/performance.md.
type Results struct {
	// Started is when the run began.
	Started time.Time `json:"started"`
	// GoVersion and GOMAXPROCS are the load generator's.
	GoVersion  string `json:"goVersion"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// Repeat is how many times each scenario ran against each target.
	Repeat int `json:"repeat"`
	// Scenarios are the load shapes, in the order they ran.
	Scenarios []Scenario `json:"scenarios"`
	// Runs are the measured runs: every scenario, against every target, Repeat times.
	Runs []Run `json:"runs"`
	// Idle is each target's memory after it became ready and before any load.
	Idle map[string]process.Sample `json:"idle"`
	// Namespaces is the run with many namespaces in the API server, if it was made.
	Namespaces *NamespacesRun `json:"namespaces,omitempty"`
	// Notes say what was left out and why.
	Notes []string `json:"notes,omitempty"`
}

// Run is one measured LoadResult and the repetition it belongs to.
type Run struct {
	Repeat int `json:"repeat"`
	LoadResult
}

// NamespacesRun measures `serve` with many namespaces in its informer.
type NamespacesRun struct {
	// Count is how many namespaces were created for the run.
	Count int `json:"count"`
	// CreateTime is how long creating them took.
	CreateTime time.Duration `json:"createTime"`
	// LongRunning is the memory of the `serve` that was already running while the
	// namespaces were created (its informer saw them through its watch).
	LongRunning process.Sample `json:"longRunning"`
	// Starts are fresh `serve` processes started after the namespaces existed.
	Starts []NamespacesStart `json:"starts"`
}

// NamespacesStart is one fresh `serve` with many namespaces: how long until its
// informer synced (readyz), its memory then, and under load.
type NamespacesStart struct {
	SyncTime time.Duration  `json:"syncTime"`
	Idle     process.Sample `json:"idle"`
	Load     LoadResult     `json:"load"`
}

// Summary is the minimum, median and maximum of repeated measurements.
type Summary struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the minimum, median (the mean of the middle two for an even
// count) and maximum of xs; the zero Summary for none.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	mid := len(s) / 2
	median := s[mid]
	if len(s)%2 == 0 {
		median = (s[mid-1] + s[mid]) / 2
	}
	return Summary{Min: s[0], Median: median, Max: s[len(s)-1], N: len(s)}
}
