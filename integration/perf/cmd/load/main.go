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
// server started with package cluster. The floor is this program re-executed as
// `load floor`. Results go to -out as JSON for perf/cmd/report.
//
// Run it from integration/ after `go tool task control-plane`:
//
//	go run ./perf/cmd/load -out /tmp/load.json
//
// -floor-only measures the floor alone, for machines without the control plane.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/perf"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// perfNamespace is the opted-in namespace the load's pods are created in.
const perfNamespace = "perf"

// options are the flags.
type options struct {
	out        string
	duration   time.Duration
	warmup     time.Duration
	repeat     int
	rate       int
	scenarios  string
	namespaces int
	floorOnly  bool
	keep       bool
	repo       string
	settle     time.Duration
	profileDir string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "", "write the results as JSON to this file (required)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each run")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each run, on the same connections")
	flag.IntVar(&o.repeat, "repeat", 3, "how many times each scenario runs against each target (min/median/max)")
	flag.IntVar(&o.rate, "rate", 1000, "requests per second of the open loop")
	flag.StringVar(&o.scenarios, "scenarios", "closed-8,closed-32,open,closed-32-h2", "comma-separated scenarios to run: closed-8, closed-32, open, closed-32-h2")
	flag.IntVar(&o.namespaces, "namespaces", 5000, "namespaces to create for the memory run (0: skip it)")
	flag.BoolVar(&o.floorOnly, "floor-only", false, "measure only the floor (no control plane, no serve)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, certificates, kubeconfig)")
	flag.StringVar(&o.repo, "repo", defaultRepo(), "root of the main module (builds cmd/sysctl-placement, reads deploy/examples)")
	flag.StringVar(&o.profileDir, "profile", "", "if set, start serve with --profiling and save a CPU profile of its first run of each scenario in this directory")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait after a server is ready before reading its idle memory")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func (o *options) validate() error {
	switch {
	case o.out == "":
		return errors.New("-out is required: the JSON file perf/cmd/report reads")
	case o.repeat < 1 || o.repeat > 20:
		return fmt.Errorf("-repeat must be between 1 and 20, got %d", o.repeat)
	case o.duration <= 0 || o.duration > 2*time.Minute:
		return fmt.Errorf("-duration must be positive and at most 2m, got %s", o.duration)
	case o.namespaces < 0 || o.namespaces > 20000:
		return fmt.Errorf("-namespaces must be between 0 and 20000, got %d", o.namespaces)
	}
	_, err := o.scenarioList()
	return err
}

// scenarioList turns -scenarios into bounded scenarios.
func (o *options) scenarioList() ([]perf.Scenario, error) {
	// A closed loop cannot exceed this many requests; the duration ends it long before.
	const closedMax = 2_000_000
	all := map[string]perf.Scenario{
		"closed-8":     {Name: "closed-8", Mode: perf.Closed, Clients: 8, MaxRequests: closedMax},
		"closed-32":    {Name: "closed-32", Mode: perf.Closed, Clients: 32, MaxRequests: closedMax},
		"closed-32-h2": {Name: "closed-32-h2", Mode: perf.Closed, Clients: 32, HTTP2: true, MaxRequests: closedMax},
		"open": {Name: fmt.Sprintf("open-%d", o.rate), Mode: perf.Open, Clients: 64, Rate: o.rate,
			MaxRequests: o.rate * int(o.duration.Seconds()+1)},
	}
	var list []perf.Scenario
	for name := range strings.SplitSeq(o.scenarios, ",") {
		s, ok := all[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q; choose from closed-8, closed-32, open, closed-32-h2", name)
		}
		s.Duration, s.Warmup = o.duration, o.warmup
		if err := s.Validate(); err != nil {
			return nil, err
		}
		list = append(list, s)
	}
	return list, nil
}

// defaultRepo is the repository root, found from this source file.
func defaultRepo() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ".."
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}

// server is a target process and how to reach it.
type server struct {
	proc   *process.Process
	target perf.Target
	// pprof is serve's /debug/pprof/profile URL when it runs with --profiling.
	pprof string
}

func run(ctx context.Context, o options) (err error) {
	scenarios, _ := o.scenarioList()
	work, err := os.MkdirTemp("", "sysctl-placement-perf-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Printf("work directory (kept): %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}

	fmt.Println("building sysctl-placement from", o.repo)
	bin := filepath.Join(work, "sysctl-placement")
	if err := goBuild(ctx, o.repo, bin, "github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement"); err != nil {
		return err
	}
	floorBin := filepath.Join(work, "floor")
	if err := goBuild(ctx, filepath.Join(o.repo, "integration"), floorBin, "./perf/cmd/floor"); err != nil {
		return err
	}
	tlsDir := filepath.Join(work, "tls")
	if err := cluster.WriteCerts(ctx, bin, tlsDir, "127.0.0.1"); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%s holds no PEM certificate", filepath.Join(tlsDir, "ca.crt"))
	}
	reviews, err := perf.CreateReviews(perfNamespace, 64)
	if err != nil {
		return err
	}

	results := &perf.Results{
		Started: time.Now().UTC(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Repeat: o.repeat, Scenarios: scenarios, Idle: map[string]process.Sample{},
	}
	tlsClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: perf.ClientTLS(roots)}}
	plainClient := &http.Client{Timeout: 2 * time.Second}

	floor, err := startFloor(ctx, floorBin, work, tlsDir, roots, tlsClient)
	if err != nil {
		return err
	}
	defer floor.proc.Stop(5 * time.Second)

	var (
		c     *cluster.Cluster
		serve *server
	)
	if o.floorOnly {
		results.Notes = append(results.Notes, "serve was not measured (-floor-only): only the floor's figures are real")
	} else {
		fmt.Println("starting the control plane (package cluster)")
		c, err = cluster.Start(ctx, cluster.Options{WorkDir: filepath.Join(work, "cluster")})
		if errors.Is(err, cluster.ErrBinariesMissing) {
			return fmt.Errorf("%w; or pass -floor-only to measure the floor alone", err)
		}
		if err != nil {
			return err
		}
		defer c.Stop()
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: perfNamespace, Annotations: map[string]string{perf.AnnotationEnabled: "true"},
		}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("could not create the opted-in namespace %s: %w", perfNamespace, err)
		}
		serve, _, err = startServe(ctx, o, bin, work, tlsDir, c.Kubeconfig, roots, "serve")
		if err != nil {
			return err
		}
		defer serve.proc.Stop(10 * time.Second)
	}

	targets := []*server{floor}
	if serve != nil {
		targets = []*server{serve, floor}
	}
	sleep(ctx, o.settle)
	for _, t := range targets {
		s, err := process.ReadSample(t.proc.Pid())
		if err != nil {
			return err
		}
		results.Idle[t.target.Name] = s
		fmt.Printf("%-5s idle: RSS %s, HWM %s\n", t.target.Name, mib(s.RSS), mib(s.HWM))
	}

	estimate := time.Duration(o.repeat*len(scenarios)*len(targets)) * (o.duration + o.warmup)
	fmt.Printf("load: %d scenarios × %d targets × %d repeats, about %s\n", len(scenarios), len(targets), o.repeat, estimate.Round(time.Second))
	for rep := 1; rep <= o.repeat; rep++ {
		for _, s := range scenarios {
			order := targets
			if rep%2 == 0 && len(targets) == 2 {
				// Alternate who goes first, so that neither always runs on a machine
				// still busy with the other's leftovers.
				order = []*server{targets[1], targets[0]}
			}
			for _, t := range order {
				var profile string
				if rep == 1 && t.pprof != "" {
					profile = filepath.Join(o.profileDir, "serve-"+s.Name+".pprof")
				}
				res, err := measure(ctx, s, t, reviews, profile)
				if err != nil {
					return err
				}
				results.Runs = append(results.Runs, perf.Run{Repeat: rep, LoadResult: res})
				printResult(rep, res)
			}
		}
	}

	if serve != nil && o.namespaces > 0 {
		nsRun, err := namespacesRun(ctx, o, c, serve, bin, work, tlsDir, roots, plainClient, reviews, scenarios)
		if err != nil {
			return err
		}
		results.Namespaces = nsRun
	}
	return writeJSON(o.out, results)
}

// goBuild builds pkg in the module at dir. sysctl-placement is built in the main
// module, with its own go.mod: the binary under test is the one that ships, not one
// built with the integration module's dependency versions.
func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("could not build %s in %s (pass -repo with the repository root): %w\n%s", pkg, dir, err, b)
	}
	return nil
}

// startFloor starts perf/cmd/floor with serve's certificate.
func startFloor(ctx context.Context, bin, work, tlsDir string, roots *x509.CertPool, client *http.Client) (*server, error) {
	addr, err := process.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	proc := &process.Process{Name: "floor", Path: bin, LogPath: filepath.Join(work, "floor.log"),
		Args: []string{"-listen", addr, "-cert", filepath.Join(tlsDir, "tls.crt"), "-key", filepath.Join(tlsDir, "tls.key")}}
	if err := proc.Start(); err != nil {
		return nil, err
	}
	if _, err := proc.WaitReady(ctx, 10*time.Second, process.HTTPReady(client, "https://"+addr+"/healthz")); err != nil {
		_ = proc.Stop(time.Second)
		return nil, err
	}
	return &server{proc: proc, target: perf.Target{Name: "floor", URL: "https://" + addr + "/mutate?timeout=10s", RootCAs: roots, ExpectPatch: true}}, nil
}

// startServe starts the real `serve` and waits for /readyz (config loaded, namespace
// informer synced); it returns how long that took.
func startServe(ctx context.Context, o options, bin, work, tlsDir, kubeconfig string, roots *x509.CertPool, name string) (*server, time.Duration, error) {
	wh, err := cluster.StartServe(ctx, cluster.ServeOptions{
		Bin: bin, Name: name, LogDir: work, ReadyTimeout: time.Minute,
		Flags: cluster.ServeFlags{
			Config:     filepath.Join(o.repo, "deploy", "examples", "placement-config.yaml"),
			CertDir:    tlsDir,
			Kubeconfig: kubeconfig,
			// No drain phase on stop: nothing balances load across these processes.
			Extra: []string{"--shutdown-grace", "5s", "--shutdown-delay", "0s", fmt.Sprintf("--profiling=%t", o.profileDir != "")},
		},
	})
	if err != nil {
		return nil, 0, err
	}
	srv := &server{proc: wh.Process(), target: perf.Target{Name: "serve", URL: wh.URL + "/mutate?timeout=10s", RootCAs: roots, ExpectPatch: true}}
	if o.profileDir != "" {
		srv.pprof = wh.MetricsURL + "/debug/pprof/profile"
	}
	return srv, wh.Ready, nil
}

// measure runs one scenario against one target: warm-up, then the measured part with
// the target's /proc watched and, when profile is set, a CPU profile of the target
// saved there.
func measure(ctx context.Context, s perf.Scenario, t *server, reviews []perf.Review, profile string) (perf.LoadResult, error) {
	l, err := perf.NewLoader(s, t.target, reviews)
	if err != nil {
		return perf.LoadResult{}, err
	}
	defer l.Close()
	if err := l.Warmup(ctx); err != nil {
		return perf.LoadResult{}, fmt.Errorf("%s, %s: %w (see %s)", s.Name, t.target.Name, err, t.proc.LogPath)
	}
	stop, err := process.Watch(ctx, t.proc.Pid(), 100*time.Millisecond)
	if err != nil {
		return perf.LoadResult{}, err
	}
	var profiled sync.WaitGroup
	if profile != "" {
		profiled.Go(func() {
			if err := perf.SaveProfile(ctx, t.pprof, max(1, int(s.Duration.Seconds())-1), profile); err != nil {
				fmt.Fprintln(os.Stderr, "load: no CPU profile:", err)
			}
		})
	}
	res, err := l.Measure(ctx)
	profiled.Wait()
	if err != nil {
		return perf.LoadResult{}, err
	}
	if res.Process, err = stop(res.Requests - res.Errors); err != nil {
		return perf.LoadResult{}, err
	}
	res.LoadAverage, _ = perf.LoadAverage()
	return res, nil
}

// namespacesRun creates o.namespaces namespaces, reads the running serve's memory,
// then starts fresh serve processes (o.repeat times) that list them all at start-up,
// and measures each idle and under the closed-32 load.
func namespacesRun(ctx context.Context, o options, c *cluster.Cluster, running *server, bin, work, tlsDir string,
	roots *x509.CertPool, client *http.Client, reviews []perf.Review, scenarios []perf.Scenario) (*perf.NamespacesRun, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	fmt.Printf("creating %d namespaces\n", o.namespaces)
	started := time.Now()
	if err := perf.CreateNamespaces(ctx, cs, o.namespaces); err != nil {
		return nil, err
	}
	run := &perf.NamespacesRun{Count: o.namespaces, CreateTime: time.Since(started)}
	fmt.Printf("created %d namespaces in %s\n", o.namespaces, run.CreateTime.Round(time.Millisecond))
	sleep(ctx, 3*time.Second) // let the running informer's watch catch up
	if run.LongRunning, err = process.ReadSample(running.proc.Pid()); err != nil {
		return nil, err
	}
	fmt.Printf("serve (running while they were created): RSS %s, HWM %s\n", mib(run.LongRunning.RSS), mib(run.LongRunning.HWM))

	load := perf.Scenario{Name: "closed-32", Mode: perf.Closed, Clients: 32, MaxRequests: 2_000_000, Duration: o.duration, Warmup: o.warmup}
	for _, s := range scenarios {
		if s.Name == "closed-32" {
			load = s
		}
	}
	for i := 1; i <= o.repeat; i++ {
		fresh, took, err := startServe(ctx, o, bin, work, tlsDir, c.Kubeconfig, roots, fmt.Sprintf("serve-namespaces-%d", i))
		if err != nil {
			return nil, err
		}
		sleep(ctx, o.settle)
		start := perf.NamespacesStart{SyncTime: took}
		if start.Idle, err = process.ReadSample(fresh.proc.Pid()); err != nil {
			fresh.proc.Stop(5 * time.Second)
			return nil, err
		}
		start.Load, err = measure(ctx, load, fresh, reviews, "")
		fresh.proc.Stop(10 * time.Second)
		if err != nil {
			return nil, err
		}
		fmt.Printf("serve with %d namespaces #%d: ready in %s, idle RSS %s; under %s RSS peak %s, HWM %s, %.0f req/s\n",
			o.namespaces, i, took.Round(time.Millisecond), mib(start.Idle.RSS), load.Name,
			mib(start.Load.Process.PeakRSS), mib(start.Load.Process.HWM), start.Load.Throughput)
		run.Starts = append(run.Starts, start)
	}
	return run, nil
}

func printResult(rep int, r perf.LoadResult) {
	fmt.Printf("#%d %-13s %-5s %8.0f req/s  p50 %-9s p90 %-9s p99 %-9s max %-9s errors %d/%d  %s conns %d  CPU %.3f s/1000  RSS peak %s  load avg %.1f\n",
		rep, r.Scenario, r.Target, r.Throughput, r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond),
		r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.Errors, r.Requests, r.Protocol, r.Connections,
		r.Process.CPUPer1000, mib(r.Process.PeakRSS), r.LoadAverage)
	for k, e := range r.ErrorKinds {
		fmt.Printf("    %d × %s (e.g. %s)\n", e.Count, k, e.Example)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
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
