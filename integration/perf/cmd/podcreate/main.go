// Command podcreate measures what admission adds to pod creation end to end, at
// fixed arrival rates below saturation: on the integration control plane with the
// default pools it creates pods asking for kernel.shmmax and kernel.sem in a fresh
// opted-in namespace (label sysctl-placement.io/enabled=true) at each -rates pods per
// second for -duration (open loop: each Create is sent at its scheduled time, however
// long the earlier ones take, and its latency counts from that time), in three arms:
//
//   - none: no admission webhook or policy;
//   - webhook: the real `serve` registered through the shipped webhook configurations;
//   - policy: the webhook-free backend, the admission policies `sysctl-placement
//     policy render` prints for the same config (admissionregistration.k8s.io/v1, CEL
//     in the API server).
//
// For each rate the arms run one after the other, in an order that rotates with the
// rate and the repetition; each namespace is deleted (pods with no grace period)
// before the next run. Around each run it reads the API server's admission metrics
// and the CPU time of kube-apiserver and serve.
//
// The pods name a scheduler that does not run (perf's unscheduledScheduler): they stay
// Pending, unbound, so neither kube-scheduler nor the hollow kubelets work during a
// run, and the arms differ only in what admits the pods. What the webhook and the
// policy add (nodeSelector, toleration) is the same for any schedulerName; the
// scheduler reads it only later. Bound pods would also not fit: 50 pods/s for a
// minute is 3,000 pods, and the ipc pool holds 110 per node.
//
// Run it from integration/ after `go tool task control-plane`; `go tool task bench`
// runs it and perf/cmd/report reads its JSON; perf.RunPodCreate does the work:
//
//	go run ./perf/cmd/podcreate -out /tmp/podcreate.json -rates 10,25 -duration 30s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

func main() {
	var o perf.PodCreateOptions
	var rates, arms string
	out := flag.String("out", "", "write the results as JSON to this file (required)")
	flag.StringVar(&rates, "rates", "10,25,50", "comma-separated arrival rates, pods per second")
	flag.DurationVar(&o.Duration, "duration", time.Minute, "how long pods arrive in each run")
	flag.StringVar(&arms, "arms", strings.Join([]string{perf.ArmNone, perf.ArmWebhook, perf.ArmPolicy}, ","), "comma-separated arms: none, webhook, policy")
	flag.IntVar(&o.Repeat, "repeat", 1, "how many times every (rate, arm) runs")
	flag.DurationVar(&o.Settle, "settle", 3*time.Second, "wait before each run, after the previous namespace is gone")
	flag.BoolVar(&o.Keep, "keep", false, "keep the work directory (component and webhook logs)")
	flag.StringVar(&o.Profile, "profile", "", "if set, start serve with --profiling and save CPU profiles of serve and kube-apiserver during the first run of each arm at each rate in this directory (at most the first 50s of a run: the API server ends any request after 60s)")
	flag.IntVar(&o.Pools, "pools", 3, "pools in the config: the example's three, followed by pools like them (their own net.ipv4.conf.ethN.* sysctls, which the probe pods do not ask for) up to this many; the policy arm renders with --allow-slower-than-webhook past three")
	flag.Parse()
	var err error
	if o.Rates, err = parseRates(rates); err == nil {
		for a := range strings.SplitSeq(arms, ",") {
			o.Arms = append(o.Arms, strings.TrimSpace(a))
		}
		err = o.Validate()
	}
	if *out == "" {
		err = errors.New("-out is required: the JSON file perf/cmd/report reads")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podcreate:", err)
		os.Exit(2)
	}
	o.Log = os.Stdout
	o.Save = func(results *perf.PodCreateResults) error { return writeResults(*out, results) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := perf.RunPodCreate(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "podcreate:", err)
		os.Exit(1)
	}
	fmt.Println("results written to", *out)
}

func parseRates(s string) ([]float64, error) {
	var rates []float64
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, fmt.Errorf("-rates: %q is not a rate between 0 and 500 pods/s", f)
		}
		rates = append(rates, r)
	}
	return rates, nil
}

func writeResults(path string, results *perf.PodCreateResults) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return fmt.Errorf("could not encode the results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("could not write the results: %w", err)
	}
	return nil
}
