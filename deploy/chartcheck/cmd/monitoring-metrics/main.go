// Command monitoring-metrics prints every metric name the alerts and the dashboard
// query, one per line, sorted: the integration tests check each against a running
// serve's /metrics.
package main

import (
	"fmt"
	"os"
	"slices"

	"github.com/sysctl-placement/sysctl-placement/deploy/chartcheck"
)

func main() {
	exprs, err := chartcheck.Expressions()
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitoring-metrics:", err)
		os.Exit(1)
	}
	var all []string
	for where, list := range exprs {
		for _, e := range list {
			names, err := chartcheck.MetricNames(e)
			if err != nil {
				fmt.Fprintf(os.Stderr, "monitoring-metrics: %s: %v\n", where, err)
				os.Exit(1)
			}
			all = append(all, names...)
		}
	}
	slices.Sort(all)
	for _, n := range slices.Compact(all) {
		fmt.Println(n)
	}
}
