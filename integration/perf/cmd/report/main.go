// Command report writes docs/performance.md from what `go tool task bench` measured:
// the output of `go test -bench -benchmem -count N` (scheduling and webhook) and the
// JSON of perf/cmd/load. Every figure is the minimum, median and maximum over the
// repeated runs; each target says whether it is met. Nothing in it is typed by hand;
// perf.WriteReport does the work.
//
//	go run ./perf/cmd/report -bench bench.txt -load load.json -podcreate podcreate.json -out ../docs/performance.md
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

func main() {
	benchPath := flag.String("bench", "", "output of go test -bench -benchmem (required)")
	loadPath := flag.String("load", "", "JSON written by perf/cmd/load (required)")
	out := flag.String("out", "", "markdown file to write (required)")
	repo := flag.String("repo", "..", "repository root, for the commit")
	podCreatePath := flag.String("podcreate", "", "JSON written by perf/cmd/podcreate (optional: the end-to-end section)")
	fleetPath := flag.String("fleet", "", "JSON written by perf/cmd/fleet (optional: the discovery-at-scale section)")
	flag.Parse()
	if *benchPath == "" || *loadPath == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "report: -bench, -load and -out are required; `go tool task bench` passes them")
		os.Exit(2)
	}
	if err := perf.WriteReport(perf.ReportInputs{Bench: *benchPath, Load: *loadPath, PodCreate: *podCreatePath, Fleet: *fleetPath, Out: *out, Repo: *repo}); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", *out)
}
