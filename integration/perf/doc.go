// Package perf measures the sysctl-placement webhook: a keep-alive HTTPS load
// generator (closed loop at a fixed number of clients, open loop at a fixed rate), a
// floor server that does the least any webhook must do (decode the AdmissionReview
// and the pod, answer a fixed patch), and the measurements built on them — RunLoad
// (serve against the floor), RunPodCreate (what admission adds to pod creation),
// RunFleet (discovery at scale) — with WriteReport turning their results into
// docs/performance.md. Processes are started, stopped and sampled with package
// process, serve with cluster.StartServe.
//
// The perf/cmd commands parse flags and call these functions, and `go tool task
// bench` runs them; of the measurements only RunFleet also runs from `go test`, in
// e2e's TestDiscoveryAtScale. The tests of this package check the
// bookkeeping (options, percentiles, histograms, the floor's answer, the benchmark
// parser) and finish in milliseconds.
//
// Every run is bounded by a duration and a request count and talks to 127.0.0.1 only.
package perf
