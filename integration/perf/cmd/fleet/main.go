// Command fleet measures pool discovery at fleet scale: on the integration control
// plane it creates -nodes Nodes in -pools pools, whose /configz one in-process
// KubeletFarm serves (one HTTPS listener, each node at its own address in 127.0.0.0/8;
// TokenReview and SubjectAccessReview like a kubelet; thousands of real kubelets do
// not fit on one machine), and -namespaces namespaces, then runs -replicas `serve` replicas as the
// shipped ServiceAccount and records their time to /readyz 200 (first install,
// joining, restarted), probes and kubelet reviews per second with one and with all
// replicas, each replica's memory and admission latency while the elected replica
// reads kubelets (perf.RunFleet).
//
// Run it from integration/ after `go tool task control-plane`; `go tool task bench`
// runs it and perf/cmd/report reads its JSON:
//
//	go run ./perf/cmd/fleet -out /tmp/fleet.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

func main() {
	var o perf.FleetOptions
	out := flag.String("out", "", "write the results as JSON to this file (required)")
	keep := flag.Bool("keep", false, "keep the work directory (component and replica logs)")
	section := flag.String("section", "", "also write the markdown section perf/cmd/report renders from the JSON to this file")
	from := flag.String("from", "", "do not run: read this JSON of an earlier run and write -section from it")
	flag.IntVar(&o.Nodes, "nodes", 5000, "Nodes, each with its own /configz listener")
	flag.IntVar(&o.Pools, "pools", 50, "pools the Nodes are spread over")
	flag.IntVar(&o.Namespaces, "namespaces", 5000, "namespaces (one in ten opted in)")
	flag.IntVar(&o.Replicas, "replicas", 3, "serve replicas")
	flag.Float64Var(&o.QPS, "qps", 20, "serve --discovery-qps (the default)")
	flag.DurationVar(&o.Refresh, "refresh", time.Minute, "serve --discovery-refresh; shorter than nodes/qps keeps the elected replica reading")
	flag.DurationVar(&o.Window, "window", 30*time.Second, "how long probes are counted with one and with all replicas")
	flag.IntVar(&o.LoadRate, "load-rate", 100, "admissions/s sent to the elected replica while it reads kubelets")
	flag.DurationVar(&o.LoadDuration, "load-duration", 20*time.Second, "how long")
	flag.StringVar(&o.HeapProfiles, "heap-profiles", "", "write each replica's heap profile (serve --profiling) to this directory where memory is measured")
	flag.Parse()
	if *from != "" {
		if err := rerender(*from, *section); err != nil {
			fmt.Fprintln(os.Stderr, "fleet:", err)
			os.Exit(1)
		}
		return
	}
	if *out == "" {
		fmt.Fprintln(os.Stderr, "fleet: -out is required: the JSON file perf/cmd/report reads")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, *out, *section, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o perf.FleetOptions, out, section string, keep bool) error {
	work, err := os.MkdirTemp("", "sysctl-placement-fleet-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("work directory (kept):", work)
	} else {
		defer os.RemoveAll(work)
	}
	fmt.Println("starting the control plane (package cluster)")
	c, err := cluster.Start(ctx, cluster.Options{WorkDir: filepath.Join(work, "cluster")})
	if err != nil {
		return err
	}
	defer c.Stop()
	o.Work = work
	o.Logf = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	res, err := perf.RunFleet(ctx, c, o)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return err
	}
	return writeSection(res, section)
}

func rerender(from, section string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var res perf.FleetResult
	if err := json.Unmarshal(data, &res); err != nil {
		return fmt.Errorf("%s is not the JSON of perf/cmd/fleet: %w", from, err)
	}
	if section == "" {
		return fmt.Errorf("-from needs -section: the file to write")
	}
	return writeSection(&res, section)
}

func writeSection(res *perf.FleetResult, section string) error {
	if section == "" {
		return nil
	}
	var md strings.Builder
	perf.WriteFleetSection(&md, res)
	return os.WriteFile(section, []byte(md.String()), 0o644)
}
