// Command report writes docs/performance.md from what `go tool task bench` measured:
// the output of `go test -bench -benchmem -count N` (scheduling and webhook) and the
// JSON of perf/cmd/load. Every figure is the minimum, median and maximum over the
// repeated runs; each target says whether it is met. Nothing in it is typed by hand.
//
//	go run ./perf/cmd/report -bench bench.txt -load load.json -podcreate podcreate.json -out ../docs/performance.md
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

// Targets of issues 7 and 15.
const (
	planBenchmark      = "BenchmarkPlan/pools=10" // 5 sysctls × 10 pools
	planMaxNs          = 10_000
	planMaxAllocs      = 50
	handlerBenchmark   = "BenchmarkMutateHandler" // a Deployment's pod, in process
	handlerMaxNs       = 40_000
	handlerMaxAllocs   = 80
	minThroughputRatio = 0.85
	maxOpenP99         = 2 * time.Millisecond
	maxRSSNamespaces   = 64 << 20
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
	if err := run(*benchPath, *loadPath, *podCreatePath, *fleetPath, *out, *repo); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(benchPath, loadPath, podCreatePath, fleetPath, out, repo string) error {
	bf, err := os.Open(benchPath)
	if err != nil {
		return fmt.Errorf("could not read the benchmark output: %w", err)
	}
	defer bf.Close()
	benches, err := parseBench(bf)
	if err != nil {
		return fmt.Errorf("%s: %w", benchPath, err)
	}
	data, err := os.ReadFile(loadPath)
	if err != nil {
		return fmt.Errorf("could not read the load results: %w", err)
	}
	var load perf.Results
	if err := json.Unmarshal(data, &load); err != nil {
		return fmt.Errorf("%s is not the JSON of perf/cmd/load: %w", loadPath, err)
	}
	podCreate, err := readPodCreate(podCreatePath)
	if err != nil {
		return err
	}
	fleet, err := readFleet(fleetPath)
	if err != nil {
		return err
	}
	doc := render(machineOf(repo), benches, &load, podCreate, fleet)
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		return err
	}
	fmt.Println("wrote", out)
	return nil
}

// machine describes where the figures were measured.
type machine struct {
	nproc     int
	cpu       string
	goVersion string
	commit    string
	date      string
}

func machineOf(repo string) machine {
	m := machine{nproc: runtime.NumCPU(), cpu: "unknown", goVersion: runtime.Version(), commit: "unknown",
		date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(info)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := exec.Command("git", "-C", repo, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(b))
		if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.commit += " (with uncommitted changes)"
		}
	}
	return m
}

// benchmark is one benchmark's samples over -count runs.
type benchmark struct {
	pkg    string
	name   string
	ns     []float64
	bytes  []float64
	allocs []float64
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseBench reads `go test -bench` text output; benchmarks keep their first
// appearance's order.
func parseBench(r io.Reader) ([]*benchmark, error) {
	var (
		list []*benchmark
		byID = map[string]*benchmark{}
		pkg  string
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		id := pkg + " " + m[1]
		b := byID[id]
		if b == nil {
			b = &benchmark{pkg: pkg, name: m[1]}
			byID[id] = b
			list = append(list, b)
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: %w", line, err)
			}
			switch f[i+1] {
			case "ns/op":
				b.ns = append(b.ns, v)
			case "B/op":
				b.bytes = append(b.bytes, v)
			case "allocs/op":
				b.allocs = append(b.allocs, v)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New("no benchmark results found; run go test -run '^$' -bench . -benchmem")
	}
	return list, nil
}

// render writes the whole document.
func render(m machine, benches []*benchmark, load *perf.Results, podCreate *perf.PodCreateResults, fleet *perf.FleetResult) string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }

	p("# Performance\n\n")
	p("Generated by `go tool task bench` (`integration/perf/cmd/report`) — do not edit by hand; rerun the task.\n")
	p("Each figure is **min / median / max** over repeated runs. The machine is shared with other builds,\n")
	p("so single runs are noisy: read the medians, and the serve/floor ratios measured in the same run.\n\n")

	p("## Machine\n\n")
	p("| nproc | CPU | Go | commit | measured | 1-min load average at the end of each load run |\n|---|---|---|---|---|---|\n")
	p("| %d | %s | %s | %s | %s | %s |\n\n", m.nproc, m.cpu, m.goVersion, m.commit, m.date,
		triple(field(load.Runs, func(r perf.Run) float64 { return r.LoadAverage }), func(v float64) string { return fmt.Sprintf("%.1f", v) }))
	p("A load average above %d means other work shared the CPUs with the measurement.\n\n", m.nproc)

	p("## Targets\n\n")
	p("| target | measured (median) | met |\n|---|---|---|\n")
	for _, t := range append(append(targets(benches, load), podCreateTargets(podCreate)...), fleetTargets(fleet)...) {
		p("| %s | %s | %s |\n", t.name, t.measured, t.verdict)
	}
	p("\n")

	p("## Go benchmarks\n\n")
	p("`go test -run '^$' -bench . -benchmem -count N ./scheduling ./webhook`, in process, no network.\n")
	p("`BenchmarkMutateHandler` and `BenchmarkValidateHandler` run a Deployment's pod (generateName,\n")
	p("ownerReferences, kernel.shmmax and kernel.sem, one container with ports, env and a volume)\n")
	p("through `review.NewHandler` against the example config: the guard, the single decode of the review,\n")
	p("`Plan`, the JSON patch and the encoded response. The `Served` ones add what `serve` adds: the JSON log\n")
	p("line per admission and the metrics.\n\n")
	p("| benchmark | runs | ns/op | B/op | allocs/op |\n|---|---|---|---|---|\n")
	for _, b := range benches {
		p("| %s `%s` | %d | %s | %s | %s |\n", shortPkg(b.pkg), b.name, len(b.ns),
			triple(perf.Summarize(b.ns), fmtNs), triple(perf.Summarize(b.bytes), fmtInt), triple(perf.Summarize(b.allocs), fmtInt))
	}
	p("\n")

	renderLoad(&w, load)
	renderMemory(&w, load)
	renderPodCreate(&w, podCreate)
	renderFleet(&w, fleet)
	renderProfile(&w)

	p("## How it is measured\n\n")
	p("- `serve` is the real command, built from the main module, with certificates from its own\n")
	p("  `certs --write-dir` (package certs), `deploy/examples/placement-config.yaml`, and a kubeconfig for\n")
	p("  a real kube-apiserver started by `integration/cluster`; it logs one JSON line per admission to a\n")
	p("  file, as in production. The namespace `perf` is opted in.\n")
	p("- The floor (`integration/perf/cmd/floor`) only decodes the AdmissionReview and the pod with\n")
	p("  `encoding/json` into the k8s.io/api types and answers a fixed patch of the same size; it logs\n")
	p("  nothing and keeps no metrics. Both serve HTTPS with the same certificate, on 127.0.0.1.\n")
	p("- The load generator (`integration/perf/cmd/load`) runs on the same machine: on %d cores it takes\n", m.nproc)
	p("  a large share of the CPU itself, so absolute throughput is a lower bound and the serve/floor\n")
	p("  ratio is the figure to compare. Closed loops send back-to-back over keep-alive connections, one\n")
	p("  per client (HTTP/1.1) or all multiplexed on one (HTTP/2). The open loop sends on a fixed\n")
	p("  schedule and counts latency from each request's scheduled time, so a stall shows in the tail;\n")
	p("  requests beyond %d in flight or queued are dropped and counted as errors.\n", openLimit(load))
	p("- Each run has a warm-up on the same connections first; serve and floor alternate which goes\n")
	p("  first. CPU is utime+stime from `/proc/<pid>/stat` around the measured part (10 ms ticks);\n")
	p("  RSS is VmRSS sampled every 100 ms, VmHWM the peak since the process started.\n")
	for _, n := range load.Notes {
		p("- Note: %s.\n", n)
	}
	return w.String()
}

func renderLoad(w io.Writer, load *perf.Results) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Load: serve against the floor\n\n")
	p("%d runs of each scenario against each target; throughput counts successful admissions.\n\n", load.Repeat)
	p("| scenario | target | protocol | req/s | p50 | p90 | p99 | max | errors | CPU s / 1,000 | RSS peak |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range load.Scenarios {
		for _, target := range []string{"serve", "floor"} {
			runs := runsOf(load, s.Name, target)
			if len(runs) == 0 {
				continue
			}
			errs, reqs := 0, 0
			for _, r := range runs {
				errs += r.Errors
				reqs += r.Requests
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %d / %d | %s | %s |\n", s.Name, target, runs[0].Protocol,
				triple(field(runs, func(r perf.Run) float64 { return r.Throughput }), fmtInt),
				triple(durField(runs, func(r perf.Run) time.Duration { return r.P50 }), fmtMs),
				triple(durField(runs, func(r perf.Run) time.Duration { return r.P90 }), fmtMs),
				triple(durField(runs, func(r perf.Run) time.Duration { return r.P99 }), fmtMs),
				triple(durField(runs, func(r perf.Run) time.Duration { return r.Max }), fmtMs),
				errs, reqs,
				triple(field(runs, func(r perf.Run) float64 { return r.Process.CPUPer1000 }), fmt3),
				triple(field(runs, func(r perf.Run) float64 { return float64(r.Process.PeakRSS) }), fmtMiB))
		}
	}
	p("\n")
	p("Ratios serve / floor, paired run by run (throughput: higher is better; p99: lower is better):\n\n")
	p("| scenario | throughput serve/floor | p99 serve/floor | CPU per admission serve/floor |\n|---|---|---|---|\n")
	for _, s := range load.Scenarios {
		tr, p99, cpu := ratios(load, s.Name)
		if tr.N == 0 {
			continue
		}
		p("| %s | %s | %s | %s |\n", s.Name, triple(tr, fmt2), triple(p99, fmt2), triple(cpu, fmt2))
	}
	p("\n")
}

func renderMemory(w io.Writer, load *perf.Results) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("## Memory\n\n")
	p("| process | state | VmRSS | VmHWM |\n|---|---|---|---|\n")
	for _, name := range []string{"serve", "floor"} {
		if s, ok := load.Idle[name]; ok {
			p("| %s | idle, ready, before any load | %s | %s |\n", name, fmtMiB(float64(s.RSS)), fmtMiB(float64(s.HWM)))
		}
	}
	for _, name := range []string{"serve", "floor"} {
		var peaks, hwms []float64
		for _, r := range load.Runs {
			if r.Target == name {
				peaks = append(peaks, float64(r.Process.PeakRSS))
				hwms = append(hwms, float64(r.Process.HWM))
			}
		}
		if len(peaks) > 0 {
			p("| %s | under load (every run above) | %s | %s |\n", name, triple(perf.Summarize(peaks), fmtMiB), fmtMiB(slices.Max(hwms)))
		}
	}
	ns := load.Namespaces
	if ns == nil {
		p("\nThe run with many namespaces was not made (see the notes below).\n\n")
		return
	}
	p("| serve | running while %d namespaces were created | %s | %s |\n", ns.Count, fmtMiB(float64(ns.LongRunning.RSS)), fmtMiB(float64(ns.LongRunning.HWM)))
	var idle, idleHWM, peak, hwm, sync []float64
	for _, s := range ns.Starts {
		idle = append(idle, float64(s.Idle.RSS))
		idleHWM = append(idleHWM, float64(s.Idle.HWM))
		peak = append(peak, float64(s.Load.Process.PeakRSS))
		hwm = append(hwm, float64(s.Load.Process.HWM))
		sync = append(sync, float64(s.SyncTime))
	}
	p("| serve | started with %d namespaces, informer synced | %s | %s |\n", ns.Count, triple(perf.Summarize(idle), fmtMiB), triple(perf.Summarize(idleHWM), fmtMiB))
	p("| serve | started with %d namespaces, under %s | %s | %s |\n", ns.Count, nsLoadName(ns), triple(perf.Summarize(peak), fmtMiB), triple(perf.Summarize(hwm), fmtMiB))
	p("\n%d namespaces (team and environment labels, the kubectl last-applied annotation, one in ten opted in) were created in %s;\n", ns.Count, ns.CreateTime.Round(time.Millisecond))
	p("a fresh `serve` was ready (config loaded, namespace informer synced) %s after it started (%d starts).\n\n", triple(perf.Summarize(sync), func(v float64) string { return time.Duration(v).Round(time.Millisecond).String() }), len(ns.Starts))
}

// openLimit is how many requests the open loop lets be in flight or queued.
func openLimit(load *perf.Results) int {
	for _, s := range load.Scenarios {
		if s.Mode == perf.Open {
			return 2 * s.Clients
		}
	}
	return 0
}

func nsLoadName(ns *perf.NamespacesRun) string {
	if len(ns.Starts) == 0 {
		return "load"
	}
	return ns.Starts[0].Load.Scenario
}

// target is one row of the targets table.
type target struct{ name, measured, verdict string }

func targets(benches []*benchmark, load *perf.Results) []target {
	var ts []target
	plan := target{name: fmt.Sprintf("`Plan` < %s and < %d allocs (5 sysctls × 10 pools, `%s`)", fmtNs(planMaxNs), planMaxAllocs, planBenchmark), measured: "not measured", verdict: "—"}
	for _, b := range benches {
		if b.name == planBenchmark {
			ns, allocs := perf.Summarize(b.ns), perf.Summarize(b.allocs)
			plan.measured = fmt.Sprintf("%s, %s allocs", fmtNs(ns.Median), fmtInt(allocs.Median))
			plan.verdict = verdict(ns.Median < planMaxNs && allocs.Median < planMaxAllocs)
		}
	}
	ts = append(ts, plan)
	handler := target{name: fmt.Sprintf("`%s` ≤ %s and ≤ %d allocs (a Deployment's pod, in process)", handlerBenchmark, fmtNs(handlerMaxNs), handlerMaxAllocs), measured: "not measured", verdict: "—"}
	for _, b := range benches {
		if b.name == handlerBenchmark {
			ns, allocs := perf.Summarize(b.ns), perf.Summarize(b.allocs)
			handler.measured = fmt.Sprintf("%s (runs: %s–%s), %s allocs", fmtNs(ns.Median), fmtNs(ns.Min), fmtNs(ns.Max), fmtInt(allocs.Median))
			handler.verdict = verdict(ns.Median <= handlerMaxNs && allocs.Median <= handlerMaxAllocs)
		}
	}
	ts = append(ts, handler)
	for _, s := range load.Scenarios {
		if s.Mode != perf.Closed {
			continue
		}
		tr, _, _ := ratios(load, s.Name)
		t := target{name: fmt.Sprintf("/mutate %s throughput ≥ %.0f%% of the floor", s.Name, minThroughputRatio*100), measured: "not measured", verdict: "—"}
		if tr.N > 0 {
			t.measured = fmt.Sprintf("%.0f%% (runs: %.0f–%.0f%%)", tr.Median*100, tr.Min*100, tr.Max*100)
			t.verdict = verdict(tr.Median >= minThroughputRatio)
		}
		ts = append(ts, t)
	}
	for _, s := range load.Scenarios {
		if s.Mode != perf.Open {
			continue
		}
		t := target{name: fmt.Sprintf("p99 at %d req/s ≤ %s", s.Rate, maxOpenP99), measured: "not measured", verdict: "—"}
		if runs := runsOf(load, s.Name, "serve"); len(runs) > 0 {
			p99 := durField(runs, func(r perf.Run) time.Duration { return r.P99 })
			errs := 0
			for _, r := range runs {
				errs += r.Errors
			}
			t.measured = fmt.Sprintf("%s, %d errors", fmtMs(p99.Median), errs)
			if floor := runsOf(load, s.Name, "floor"); len(floor) > 0 {
				// The floor's tail in the same runs shows how much of it is the machine.
				t.measured += fmt.Sprintf(" (floor in the same runs: %s)", fmtMs(durField(floor, func(r perf.Run) time.Duration { return r.P99 }).Median))
			}
			t.verdict = verdict(time.Duration(p99.Median) <= maxOpenP99 && errs == 0)
		}
		ts = append(ts, t)
	}
	rss := target{name: "RSS < 64 MiB with 5,000 namespaces (after the informer synced)", measured: "not measured", verdict: "—"}
	if ns := load.Namespaces; ns != nil && len(ns.Starts) > 0 {
		var idle, peak []float64
		for _, s := range ns.Starts {
			idle = append(idle, float64(s.Idle.RSS))
			peak = append(peak, float64(s.Load.Process.PeakRSS))
		}
		i, pk := perf.Summarize(idle), perf.Summarize(peak)
		rss.name = fmt.Sprintf("RSS < 64 MiB with %d namespaces (after the informer synced)", ns.Count)
		rss.measured = fmt.Sprintf("%s idle; %s peak under load", fmtMiB(i.Median), fmtMiB(pk.Median))
		rss.verdict = verdict(i.Median < maxRSSNamespaces)
		if ns.Count < 5000 {
			rss.verdict += fmt.Sprintf(" (only %d namespaces)", ns.Count)
		}
	}
	return append(ts, rss)
}

func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func runsOf(load *perf.Results, scenario, target string) []perf.Run {
	var runs []perf.Run
	for _, r := range load.Runs {
		if r.Scenario == scenario && r.Target == target {
			runs = append(runs, r)
		}
	}
	return runs
}

// ratios pairs serve's and the floor's runs of one repetition.
func ratios(load *perf.Results, scenario string) (throughput, p99, cpu perf.Summary) {
	var tr, p, c []float64
	for _, s := range runsOf(load, scenario, "serve") {
		for _, f := range runsOf(load, scenario, "floor") {
			if f.Repeat != s.Repeat || f.Throughput == 0 || f.P99 == 0 {
				continue
			}
			tr = append(tr, s.Throughput/f.Throughput)
			p = append(p, float64(s.P99)/float64(f.P99))
			if f.Process.CPUPer1000 > 0 {
				c = append(c, s.Process.CPUPer1000/f.Process.CPUPer1000)
			}
		}
	}
	return perf.Summarize(tr), perf.Summarize(p), perf.Summarize(c)
}

func field(runs []perf.Run, f func(perf.Run) float64) perf.Summary {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return perf.Summarize(xs)
}

func durField(runs []perf.Run, f func(perf.Run) time.Duration) perf.Summary {
	return field(runs, func(r perf.Run) float64 { return float64(f(r)) })
}

// triple formats min / median / max; a single run is shown alone.
func triple(s perf.Summary, f func(float64) string) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return f(s.Median)
	}
	return f(s.Min) + " / **" + f(s.Median) + "** / " + f(s.Max)
}

func fmtNs(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f ms", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f µs", v/1e3)
	}
	return fmt.Sprintf("%.0f ns", v)
}

func fmtMs(v float64) string  { return fmt.Sprintf("%.2f ms", v/1e6) }
func fmtInt(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func fmt2(v float64) string   { return fmt.Sprintf("%.2f", v) }
func fmt3(v float64) string   { return fmt.Sprintf("%.3f", v) }
func fmtMiB(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

func shortPkg(pkg string) string {
	if pkg == "" {
		return ""
	}
	return filepath.Base(pkg)
}
