package perf

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// perfNamespace is the opted-in namespace the load's pods are created in.
const perfNamespace = "perf"

// LoadOptions configure RunLoad; perf/cmd/load sets them from its flags, named
// alike.
type LoadOptions struct {
	// Duration is the measured time of each run, Warmup the unmeasured warm-up
	// before it on the same connections.
	Duration, Warmup time.Duration
	// Repeat is how many times each scenario runs against each target.
	Repeat int
	// Rate is the open loop's requests per second.
	Rate int
	// Scenarios is a comma-separated list of closed-8, closed-32, open, closed-32-h2.
	Scenarios string
	// Namespaces is how many namespaces the memory run creates (0: no memory run).
	Namespaces int
	// FloorOnly measures the floor alone: no control plane, no serve.
	FloorOnly bool
	// Keep keeps the work directory (logs, certificates, kubeconfig).
	Keep bool
	// Repo is the main module's root: it builds cmd/sysctl-placement and reads
	// deploy/examples.
	Repo string
	// Settle is the wait after a server is ready before its idle memory is read.
	Settle time.Duration
	// ProfileDir, when set, starts serve with --profiling and saves a CPU profile of
	// its first run of each scenario there.
	ProfileDir string
	// Log receives the progress.
	Log io.Writer
}

// Validate says which option to change.
func (o *LoadOptions) Validate() error {
	switch {
	case o.Repeat < 1 || o.Repeat > 20:
		return fmt.Errorf("-repeat must be between 1 and 20, got %d", o.Repeat)
	case o.Duration <= 0 || o.Duration > 2*time.Minute:
		return fmt.Errorf("-duration must be positive and at most 2m, got %s", o.Duration)
	case o.Namespaces < 0 || o.Namespaces > 20000:
		return fmt.Errorf("-namespaces must be between 0 and 20000, got %d", o.Namespaces)
	}
	_, err := o.scenarioList()
	return err
}

// scenarioList turns -scenarios into bounded scenarios.
func (o *LoadOptions) scenarioList() ([]Scenario, error) {
	// A closed loop cannot exceed this many requests; the duration ends it long before.
	const closedMax = 2_000_000
	all := map[string]Scenario{
		"closed-8":     {Name: "closed-8", Mode: Closed, Clients: 8, MaxRequests: closedMax},
		"closed-32":    {Name: "closed-32", Mode: Closed, Clients: 32, MaxRequests: closedMax},
		"closed-32-h2": {Name: "closed-32-h2", Mode: Closed, Clients: 32, HTTP2: true, MaxRequests: closedMax},
		"open": {Name: fmt.Sprintf("open-%d", o.Rate), Mode: Open, Clients: 64, Rate: o.Rate,
			MaxRequests: o.Rate * int(o.Duration.Seconds()+1)},
	}
	var list []Scenario
	for name := range strings.SplitSeq(o.Scenarios, ",") {
		s, ok := all[strings.TrimSpace(name)]
		if !ok {
			return nil, fmt.Errorf("-scenarios: unknown scenario %q; choose from closed-8, closed-32, open, closed-32-h2", name)
		}
		s.Duration, s.Warmup = o.Duration, o.Warmup
		if err := s.Validate(); err != nil {
			return nil, err
		}
		list = append(list, s)
	}
	return list, nil
}

// server is a target process and how to reach it.
type server struct {
	proc   *process.Process
	target Target
	// pprof is serve's /debug/pprof/profile URL when it runs with --profiling.
	pprof string
}

// RunLoad measures serve and the floor under each scenario of o and, with
// o.Namespaces, serve with that many namespaces; progress goes to o.Log.
func RunLoad(ctx context.Context, o LoadOptions) (_ *Results, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	scenarios, _ := o.scenarioList()
	work, err := os.MkdirTemp("", "sysctl-placement-perf-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		fmt.Fprintf(o.Log, "work directory (kept): %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}

	fmt.Fprintln(o.Log, "building sysctl-placement from", o.Repo)
	bin := filepath.Join(work, "sysctl-placement")
	if err := goBuild(ctx, o.Repo, bin, "github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement"); err != nil {
		return nil, err
	}
	floorBin := filepath.Join(work, "floor")
	if err := goBuild(ctx, filepath.Join(o.Repo, "integration"), floorBin, "./perf/cmd/floor"); err != nil {
		return nil, err
	}
	tlsDir := filepath.Join(work, "tls")
	roots, err := servingCerts(ctx, bin, tlsDir)
	if err != nil {
		return nil, err
	}
	reviews, err := CreateReviews(perfNamespace, 64)
	if err != nil {
		return nil, err
	}

	results := &Results{
		Started: time.Now().UTC(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Repeat: o.Repeat, Scenarios: scenarios, Idle: map[string]process.Sample{},
	}
	tlsClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: ClientTLS(roots)}}

	floor, err := startFloor(ctx, floorBin, work, tlsDir, roots, tlsClient)
	if err != nil {
		return nil, err
	}
	defer floor.proc.Stop(5 * time.Second)

	var (
		c     *cluster.Cluster
		serve *server
	)
	if o.FloorOnly {
		results.Notes = append(results.Notes, "serve was not measured (-floor-only): only the floor's figures are real")
	} else {
		fmt.Fprintln(o.Log, "starting the control plane (package cluster)")
		c, err = cluster.Start(ctx, cluster.Options{WorkDir: filepath.Join(work, "cluster")})
		if errors.Is(err, cluster.ErrBinariesMissing) {
			return nil, fmt.Errorf("%w; or pass -floor-only to measure the floor alone", err)
		}
		if err != nil {
			return nil, err
		}
		defer c.Stop()
		if err := CreateOptedInNamespace(ctx, c.Client, perfNamespace); err != nil {
			return nil, err
		}
		serve, _, err = startServe(ctx, o, bin, work, tlsDir, c.Kubeconfig, roots, "serve")
		if err != nil {
			return nil, err
		}
		defer serve.proc.Stop(10 * time.Second)
	}

	targets := []*server{floor}
	if serve != nil {
		targets = []*server{serve, floor}
	}
	sleep(ctx, o.Settle)
	for _, t := range targets {
		s, err := process.ReadSample(t.proc.Pid())
		if err != nil {
			return nil, err
		}
		results.Idle[t.target.Name] = s
		fmt.Fprintf(o.Log, "%-5s idle: RSS %s, HWM %s\n", t.target.Name, mib(s.RSS), mib(s.HWM))
	}

	estimate := time.Duration(o.Repeat*len(scenarios)*len(targets)) * (o.Duration + o.Warmup)
	fmt.Fprintf(o.Log, "load: %d scenarios × %d targets × %d repeats, about %s\n", len(scenarios), len(targets), o.Repeat, estimate.Round(time.Second))
	for rep := 1; rep <= o.Repeat; rep++ {
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
					profile = filepath.Join(o.ProfileDir, "serve-"+s.Name+".pprof")
				}
				res, err := measure(ctx, o.Log, s, t, reviews, profile)
				if err != nil {
					return nil, err
				}
				results.Runs = append(results.Runs, Run{Repeat: rep, LoadResult: res})
				printResult(o.Log, rep, res)
			}
		}
	}

	if serve != nil && o.Namespaces > 0 {
		nsRun, err := namespacesRun(ctx, o, c, serve, bin, work, tlsDir, roots, reviews, scenarios)
		if err != nil {
			return nil, err
		}
		results.Namespaces = nsRun
	}
	return results, nil
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
	return &server{proc: proc, target: Target{Name: "floor", URL: "https://" + addr + "/mutate?timeout=10s", RootCAs: roots, ExpectPatch: true}}, nil
}

// startServe starts the real `serve` and waits for /readyz (config loaded, namespace
// informer synced); it returns how long that took.
func startServe(ctx context.Context, o LoadOptions, bin, work, tlsDir, kubeconfig string, roots *x509.CertPool, name string) (*server, time.Duration, error) {
	wh, err := cluster.StartServe(ctx, cluster.ServeOptions{
		Bin: bin, Name: name, LogDir: work, ReadyTimeout: time.Minute,
		Flags: cluster.ServeFlags{
			Config:     filepath.Join(o.Repo, "deploy", "examples", "placement-config.yaml"),
			CertDir:    tlsDir,
			Kubeconfig: kubeconfig,
			// No drain phase on stop: nothing balances load across these processes.
			Extra: []string{"--shutdown-grace", "5s", "--shutdown-delay", "0s", fmt.Sprintf("--profiling=%t", o.ProfileDir != "")},
		},
	})
	if err != nil {
		return nil, 0, err
	}
	srv := &server{proc: wh.Process(), target: Target{Name: "serve", URL: wh.URL + "/mutate?timeout=10s", RootCAs: roots, ExpectPatch: true}}
	if o.ProfileDir != "" {
		srv.pprof = wh.MetricsURL + "/debug/pprof/profile"
	}
	return srv, wh.Ready, nil
}

// measure runs one scenario against one target: warm-up, then the measured part with
// the target's /proc watched and, when profile is set, a CPU profile of the target
// saved there.
func measure(ctx context.Context, log io.Writer, s Scenario, t *server, reviews []Review, profile string) (LoadResult, error) {
	l, err := NewLoader(s, t.target, reviews)
	if err != nil {
		return LoadResult{}, err
	}
	defer l.Close()
	if err := l.Warmup(ctx); err != nil {
		return LoadResult{}, fmt.Errorf("%s, %s: %w (see %s)", s.Name, t.target.Name, err, t.proc.LogPath)
	}
	stop, err := process.Watch(ctx, t.proc.Pid(), 100*time.Millisecond)
	if err != nil {
		return LoadResult{}, err
	}
	var profiled sync.WaitGroup
	if profile != "" {
		profiled.Go(func() {
			if err := SaveProfile(ctx, t.pprof, max(1, int(s.Duration.Seconds())-1), profile); err != nil {
				fmt.Fprintln(log, "load: no CPU profile:", err)
			}
		})
	}
	res, err := l.Measure(ctx)
	profiled.Wait()
	if err != nil {
		return LoadResult{}, err
	}
	if res.Process, err = stop(res.Requests - res.Errors); err != nil {
		return LoadResult{}, err
	}
	res.LoadAverage, _ = LoadAverage()
	return res, nil
}

// namespacesRun creates o.Namespaces namespaces, reads the running serve's memory,
// then starts fresh serve processes (o.Repeat times) that list them all at start-up,
// and measures each idle and under the closed-32 load.
func namespacesRun(ctx context.Context, o LoadOptions, c *cluster.Cluster, running *server, bin, work, tlsDir string,
	roots *x509.CertPool, reviews []Review, scenarios []Scenario) (*NamespacesRun, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "creating %d namespaces\n", o.Namespaces)
	started := time.Now()
	if err := CreateNamespaces(ctx, cs, o.Namespaces); err != nil {
		return nil, err
	}
	run := &NamespacesRun{Count: o.Namespaces, CreateTime: time.Since(started)}
	fmt.Fprintf(o.Log, "created %d namespaces in %s\n", o.Namespaces, run.CreateTime.Round(time.Millisecond))
	sleep(ctx, 3*time.Second) // let the running informer's watch catch up
	if run.LongRunning, err = process.ReadSample(running.proc.Pid()); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Log, "serve (running while they were created): RSS %s, HWM %s\n", mib(run.LongRunning.RSS), mib(run.LongRunning.HWM))

	load := Scenario{Name: "closed-32", Mode: Closed, Clients: 32, MaxRequests: 2_000_000, Duration: o.Duration, Warmup: o.Warmup}
	for _, s := range scenarios {
		if s.Name == "closed-32" {
			load = s
		}
	}
	for i := 1; i <= o.Repeat; i++ {
		fresh, took, err := startServe(ctx, o, bin, work, tlsDir, c.Kubeconfig, roots, fmt.Sprintf("serve-namespaces-%d", i))
		if err != nil {
			return nil, err
		}
		sleep(ctx, o.Settle)
		start := NamespacesStart{SyncTime: took}
		if start.Idle, err = process.ReadSample(fresh.proc.Pid()); err != nil {
			fresh.proc.Stop(5 * time.Second)
			return nil, err
		}
		start.Load, err = measure(ctx, o.Log, load, fresh, reviews, "")
		fresh.proc.Stop(10 * time.Second)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Log, "serve with %d namespaces #%d: ready in %s, idle RSS %s; under %s RSS peak %s, HWM %s, %.0f req/s\n",
			o.Namespaces, i, took.Round(time.Millisecond), mib(start.Idle.RSS), load.Name,
			mib(start.Load.Process.PeakRSS), mib(start.Load.Process.HWM), start.Load.Throughput)
		run.Starts = append(run.Starts, start)
	}
	return run, nil
}

func printResult(w io.Writer, rep int, r LoadResult) {
	fmt.Fprintf(w, "#%d %-13s %-5s %8.0f req/s  p50 %-9s p90 %-9s p99 %-9s max %-9s errors %d/%d  %s conns %d  CPU %.3f s/1000  RSS peak %s  load avg %.1f\n",
		rep, r.Scenario, r.Target, r.Throughput, r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond),
		r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.Errors, r.Requests, r.Protocol, r.Connections,
		r.Process.CPUPer1000, mib(r.Process.PeakRSS), r.LoadAverage)
	for k, e := range r.ErrorKinds {
		fmt.Fprintf(w, "    %d × %s (e.g. %s)\n", e.Count, k, e.Example)
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
