// Command chart-readme regenerates the values table of the chart's README.md from
// values.yaml and its comments (chartcheck.WithValuesTable). `go tool task
// chart-readme` runs it; TestChartReadmeValuesTableIsCurrent fails until it has.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sysctl-placement/sysctl-placement/deploy/chartcheck"
)

func main() {
	readme, err := os.ReadFile(chartcheck.ReadmePath())
	if err != nil {
		fail(err)
	}
	values, err := os.ReadFile(filepath.Join(chartcheck.ChartDir(), "values.yaml"))
	if err != nil {
		fail(err)
	}
	out, err := chartcheck.WithValuesTable(readme, values)
	if err != nil {
		fail(err)
	}
	if err := os.WriteFile(chartcheck.ReadmePath(), out, 0o644); err != nil {
		fail(err)
	}
	fmt.Println(chartcheck.ReadmePath())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chart-readme:", err)
	os.Exit(1)
}
