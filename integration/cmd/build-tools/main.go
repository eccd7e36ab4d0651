// Command build-tools is `go tool task tools`: it builds every program the integration
// tests and the demo run (cluster.Tools: sysctl-placement from the main module, the exec
// credential plugin, chartcheck's helm-template and monitoring-metrics) into -out,
// before any test starts the clock. The tasks that run tests name that directory in
// SYSCTL_PLACEMENT_TOOLS.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

func main() {
	out := flag.String("out", "", "the directory to build into (required)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "build-tools: -out is required: the directory SYSCTL_PLACEMENT_TOOLS will name")
		os.Exit(2)
	}
	if err := cluster.BuildTools(*out, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "build-tools:", err)
		os.Exit(1)
	}
}
