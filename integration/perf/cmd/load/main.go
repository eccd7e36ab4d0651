// Command load measures the real `sysctl-placement serve` against a floor server
// under the same load, in the same run, on the loopback interface:
//
//   - closed loops of 8 and 32 keep-alive HTTP/1.1 clients, and 32 clients over one
//     HTTP/2 connection;
//   - an open loop at a fixed rate (1,000 req/s by default), latency counted from
//     each request's scheduled time;
//   - each target's RSS (VmRSS, VmHWM) idle and under load, and its CPU seconds per
//     1,000 admissions (utime+stime from /proc);
//   - `serve` again with thousands of namespaces in the API server.
//
// `serve` is built from the main module, gets its certificates from its own `certs
// --write-dir` (package certs), the example config, and a kubeconfig for a real API
// server started with package cluster. The floor is perf/cmd/floor, built and run
// beside it. perf.RunLoad does the work; results go to -out as JSON for perf/cmd/report.
//
// Run it from integration/ after `go tool task control-plane`:
//
//	go run ./perf/cmd/load -out /tmp/load.json
//
// -floor-only measures the floor alone, for machines without the control plane.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

func main() {
	o := perf.LoadOptions{Log: os.Stdout}
	out := flag.String("out", "", "write the results as JSON to this file (required)")
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time of each run")
	flag.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured warm-up before each run, on the same connections")
	flag.IntVar(&o.Repeat, "repeat", 3, "how many times each scenario runs against each target (min/median/max)")
	flag.IntVar(&o.Rate, "rate", 1000, "requests per second of the open loop")
	flag.StringVar(&o.Scenarios, "scenarios", "closed-8,closed-32,open,closed-32-h2", "comma-separated scenarios to run: closed-8, closed-32, open, closed-32-h2")
	flag.IntVar(&o.Namespaces, "namespaces", 5000, "namespaces to create for the memory run (0: skip it)")
	flag.BoolVar(&o.FloorOnly, "floor-only", false, "measure only the floor (no control plane, no serve)")
	flag.BoolVar(&o.Keep, "keep", false, "keep the work directory (logs, certificates, kubeconfig)")
	flag.StringVar(&o.Repo, "repo", cluster.RepoRoot(), "root of the main module (builds cmd/sysctl-placement, reads deploy/examples)")
	flag.StringVar(&o.ProfileDir, "profile", "", "if set, start serve with --profiling and save a CPU profile of its first run of each scenario in this directory")
	flag.DurationVar(&o.Settle, "settle", 2*time.Second, "wait after a server is ready before reading its idle memory")
	flag.Parse()
	err := o.Validate()
	if *out == "" {
		err = errors.New("-out is required: the JSON file perf/cmd/report reads")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := perf.RunLoad(ctx, o)
	if err == nil {
		err = writeJSON(*out, results)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("could not write the results: %w", err)
	}
	fmt.Println("results written to", path)
	return nil
}
