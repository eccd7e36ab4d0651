// Package perf measures the sysctl-placement webhook under load: a keep-alive HTTPS
// load generator (closed loop at a fixed number of clients, open loop at a fixed
// rate), a floor server that does the least any webhook must do (decode the
// AdmissionReview and the pod, answer a fixed patch), and what /proc says about a
// process's memory and CPU time.
//
// Nothing here runs from `go test`: the measurements are made by the main packages
// perf/cmd/load (the load run against the real `serve` and the floor) and
// perf/cmd/report (docs/performance.md), which `go tool task bench` runs. The tests
// of this package only check the bookkeeping (percentiles, /proc parsing, the floor's
// answer) and finish in milliseconds.
//
// Every run is bounded by a duration and a request count and talks to 127.0.0.1 only.
package perf
