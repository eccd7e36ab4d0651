package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// labelEnabled opts a namespace in (scheduling.LabelEnabled; the integration module
// does not import the main module). The shipped webhooks select on it, and so does
// the policy's binding.
const labelEnabled = "sysctl-placement.io/enabled"

// PodCreateOptions configure RunPodCreate; perf/cmd/podcreate sets them from its
// flags, named alike.
type PodCreateOptions struct {
	// Rates are the arrival rates, pods per second (0 < rate ≤ 500).
	Rates []float64
	// Duration is how long pods arrive in each run (1s to 10m).
	Duration time.Duration
	// Arms are the arms to run: ArmNone, ArmWebhook, ArmPolicy.
	Arms []string
	// Repeat is how many times every (rate, arm) runs (1 to 10).
	Repeat int
	// Settle is the wait before each run, after the previous namespace is gone.
	Settle time.Duration
	// Keep keeps the work directory (component and webhook logs).
	Keep bool
	// Pools, when above the example's three, adds pools like them to the config both
	// backends place with, so the cost of more pools shows.
	Pools int
	// Profile, when set, starts serve with --profiling and saves CPU profiles of
	// serve and kube-apiserver during the first run of each arm at each rate there.
	Profile string
	// Save is called with the results after every run and at the end, so that a
	// later failure keeps what was measured. Optional.
	Save func(*PodCreateResults) error
	// Log receives the progress.
	Log io.Writer
}

// Validate says which option to change.
func (o *PodCreateOptions) Validate() error {
	if len(o.Rates) == 0 || len(o.Arms) == 0 {
		return errors.New("want at least one rate (-rates) and one arm (-arms)")
	}
	for _, r := range o.Rates {
		if r <= 0 || r > 500 {
			return fmt.Errorf("-rates: %g is not a rate between 0 and 500 pods/s", r)
		}
	}
	for _, a := range o.Arms {
		if a != ArmNone && a != ArmWebhook && a != ArmPolicy {
			return fmt.Errorf("-arms: %q is not one of none, webhook, policy", a)
		}
	}
	if o.Duration < time.Second || o.Duration > 10*time.Minute || o.Repeat < 1 || o.Repeat > 10 {
		return errors.New("want 1s ≤ -duration ≤ 10m and 1 ≤ -repeat ≤ 10")
	}
	return nil
}

// RunPodCreate measures pod creation through each arm at each rate of o on a
// cluster of its own with the default pools; progress goes to o.Log.
func RunPodCreate(ctx context.Context, o PodCreateOptions) (*PodCreateResults, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Save == nil {
		o.Save = func(*PodCreateResults) error { return nil }
	}
	if o.Profile != "" {
		if err := os.MkdirAll(o.Profile, 0o755); err != nil {
			return nil, fmt.Errorf("-profile: %w", err)
		}
	}
	work, err := os.MkdirTemp("", "sysctl-placement-podcreate-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		fmt.Fprintln(o.Log, "work directory (kept):", work)
	} else {
		defer os.RemoveAll(work)
	}
	fmt.Fprintln(o.Log, "starting the control plane (package cluster) with the default pools")
	c, err := cluster.Start(ctx, cluster.Options{WorkDir: filepath.Join(work, "cluster")})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
		return nil, err
	}
	// The webhook's own namespace, for its audit-events leader election.
	if err := createNamespace(ctx, c.Client, "sysctl-placement", false); err != nil {
		return nil, err
	}
	// Production logging (JSON at info level, one line per admission), not the
	// harness's --development text at debug level.
	configFile, renderArgs, err := poolsConfig(work, o.Pools)
	if err != nil {
		return nil, err
	}
	wh, err := c.StartWebhook(ctx, cluster.WebhookOptions{ConfigFile: configFile, ExtraArgs: []string{"--development=false", fmt.Sprintf("--profiling=%t", o.Profile != "")}})
	if err != nil {
		return nil, fmt.Errorf("could not start the webhook: %w", err)
	}
	defer wh.Terminate(10 * time.Second)

	cfg := rest.CopyConfig(c.Config)
	// No client-side rate limit: the schedule sets the rate.
	cfg.QPS, cfg.Burst = -1, 0
	cfg.WarningHandler = rest.NoWarnings{}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	policies, err := cluster.RenderPolicies(ctx, renderArgs...)
	if err != nil {
		return nil, err
	}
	a := arms{c: c, wh: wh, policies: policies}
	if err := a.learnPlacement(ctx); err != nil {
		return nil, err
	}
	observe := observer{c: c, wh: wh}
	results := &PodCreateResults{Started: time.Now().UTC(), Rates: o.Rates, Duration: o.Duration, Arms: o.Arms, Pools: max(o.Pools, 3),
		NodeSelector: a.nodeSelector, Toleration: fmt.Sprintf("%s=%s:%s (%s)", a.toleration.Key, a.toleration.Value, a.toleration.Effect, a.toleration.Operator)}
	turn := 0
	for rep := 1; rep <= o.Repeat; rep++ {
		for _, rate := range o.Rates {
			// Rotate the order so that no arm always runs first (on a cold machine) or
			// right after the same other arm.
			order := slices.Clone(o.Arms)
			for range turn % len(order) {
				order = append(order[1:], order[0])
			}
			turn++
			for _, arm := range order {
				if err := a.set(ctx, arm); err != nil {
					return nil, fmt.Errorf("could not set up arm %s: %w", arm, err)
				}
				var profile func(process string) string
				if o.Profile != "" && rep == 1 {
					profile = func(process string) string {
						return filepath.Join(o.Profile, fmt.Sprintf("%s-%s-%g.pprof", process, arm, rate))
					}
				}
				r, err := measurePodCreate(ctx, client, o, rep, arm, rate, a.probeWants(arm), observe, profile)
				if err != nil {
					return nil, err
				}
				results.Runs = append(results.Runs, r)
				// Written after every run: a later failure keeps what was measured.
				if err := o.Save(results); err != nil {
					return nil, err
				}
				fmt.Fprintf(o.Log, "#%d %-7s %3.0f pods/s: %d sent, %d created, %d errors, %d placed in %s (send lag max %s): p50 %s p99 %s max %s  load avg %.1f\n",
					r.Repeat, r.Arm, r.Rate, r.Sent, r.Created, r.Errors, r.Placed, r.Took.Round(time.Millisecond), r.MaxSendLag.Round(time.Microsecond),
					r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.LoadAverage)
				fmt.Fprintf(o.Log, "    API server: webhook calls %.0f (p99 %s, mean %s), policy %.0f (p99 %s, mean %s); serve reviews %d (mean %s), Events %d; CPU serve %s, kube-apiserver %s\n",
					r.Webhook.Count, seconds(r.Webhook.Quantile(0.99)), seconds(r.Webhook.Mean()),
					r.Policy.Count, seconds(r.Policy.Quantile(0.99)), seconds(r.Policy.Mean()),
					r.ServeReviews, r.ServeReviewMean.Round(time.Microsecond), r.ServeEvents, r.ServeCPU.Round(time.Millisecond), r.APIServerCPU.Round(time.Millisecond))
				if r.ErrorExample != "" {
					fmt.Fprintln(o.Log, "    e.g.", r.ErrorExample)
				}
			}
		}
	}
	if err := a.set(ctx, ArmNone); err != nil {
		return nil, err
	}
	if err := o.Save(results); err != nil {
		return nil, err
	}
	return results, nil
}

// poolsConfig is the config both backends place with and render's arguments for it:
// the example config, or with more than three pools the example's followed by pools
// like them that the probe pods (kernel.shmmax, kernel.sem: the ipc pool's) never
// land on, so only the cost of checking them grows.
func poolsConfig(work string, pools int) (string, []string, error) {
	example := filepath.Join(cluster.RepoRoot(), "deploy", "examples", "placement-config.yaml")
	if pools <= 3 {
		return example, []string{"--config", example}, nil
	}
	data, err := os.ReadFile(example)
	if err != nil {
		return "", nil, err
	}
	head, policy, ok := strings.Cut(string(data), "\npolicy:\n")
	if !ok {
		return "", nil, fmt.Errorf("%s has no policy section to add pools before", example)
	}
	var b strings.Builder
	b.WriteString(head + "\n")
	for i := 3; i < pools; i++ {
		fmt.Fprintf(&b, "  - name: extra-%[1]d\n    nodeSelector: {sysctl-placement.io/pool: extra-%[1]d}\n    taints: [{key: dedicated, value: extra-%[1]d, effect: NoSchedule}]\n    allowedUnsafeSysctls: [\"net.ipv4.conf.eth%[1]d.*\", \"net.ipv4.neigh.eth%[1]d.gc_stale_time\"]\n    kubeletVersion: \"1.37.2\"\n    kernelVersion: \"6.8.0\"\n", i)
	}
	b.WriteString("policy:\n" + policy)
	path := filepath.Join(work, fmt.Sprintf("placement-config-%d-pools.yaml", pools))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", nil, err
	}
	return path, []string{"--config", path, "--allow-slower-than-webhook"}, nil
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

// arms switches the cluster between the arms.
type arms struct {
	c  *cluster.Cluster
	wh *cluster.Webhook
	// What the webhook adds to sysctlPod, learnt from a dry run; the policy adds it too.
	nodeSelector map[string]string
	toleration   corev1.Toleration
	// policies are the rendered policies of the webhook's config.
	policies *cluster.Policies
}

const probeNS = "podcreate-probe"

// learnPlacement registers the webhook and keeps the nodeSelector and toleration it
// gives a dry-run sysctlPod.
func (a *arms) learnPlacement(ctx context.Context) error {
	if err := createNamespace(ctx, a.c.Client, probeNS, true); err != nil {
		return err
	}
	if err := a.set(ctx, ArmWebhook); err != nil {
		return err
	}
	got, err := a.c.Client.CoreV1().Pods(probeNS).Create(ctx, sysctlPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return fmt.Errorf("the webhook did not admit the probe pod: %w", err)
	}
	for _, t := range got.Spec.Tolerations {
		if t.TolerationSeconds == nil { // not one of DefaultTolerationSeconds'
			a.toleration = t
		}
	}
	if len(got.Spec.NodeSelector) == 0 || a.toleration.Key == "" {
		return fmt.Errorf("the webhook did not place the probe pod: nodeSelector %v, tolerations %v", got.Spec.NodeSelector, got.Spec.Tolerations)
	}
	a.nodeSelector = got.Spec.NodeSelector
	return nil
}

// probeWants says whether a pod created in arm comes back with the nodeSelector.
func (a *arms) probeWants(arm string) bool { return arm != ArmNone }

// set leaves exactly arm's admission in place and waits until the API server applies
// it: a dry-run pod comes back placed (webhook, policy) or not (none).
func (a *arms) set(ctx context.Context, arm string) error {
	admission := a.c.Client.AdmissionregistrationV1()
	if arm != ArmWebhook {
		m, v, err := a.c.ShippedWebhookConfigurations(ctx)
		if err != nil {
			return err
		}
		if err := admission.MutatingWebhookConfigurations().Delete(ctx, m.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := admission.ValidatingWebhookConfigurations().Delete(ctx, v.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if arm != ArmPolicy {
		if err := a.c.DeletePolicies(ctx, a.policies); err != nil {
			return err
		}
	}
	switch arm {
	case ArmWebhook:
		// RegisterWebhook waits until the API server calls it.
		if err := a.c.RegisterWebhook(ctx, a.wh); err != nil {
			return err
		}
	case ArmPolicy:
		// Already there when the previous run was the policy arm too.
		if err := a.c.ApplyPolicies(ctx, a.policies); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := a.c.Client.CoreV1().Pods(probeNS).Create(ctx, sysctlPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			// A webhook still registered may be failing closed; try again.
			last = err
			return false, nil
		}
		placed := len(got.Spec.NodeSelector) > 0
		last = fmt.Errorf("a dry-run pod came back with nodeSelector %v", got.Spec.NodeSelector)
		return placed == a.probeWants(arm), nil
	})
	if err != nil {
		return fmt.Errorf("the API server does not apply arm %s yet: %w (last: %v)", arm, err, last)
	}
	return nil
}

func createNamespace(ctx context.Context, client kubernetes.Interface, name string, optIn bool) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if optIn {
		ns.Labels = map[string]string{labelEnabled: "true"}
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("could not create namespace %s: %w", name, err)
	}
	return nil
}

// maxProfile bounds a CPU profile: kube-apiserver ends a request after 60s
// (--request-timeout), pprof's included.
const maxProfile = 50 * time.Second

// unscheduledScheduler is the schedulerName of every pod podcreate creates: no
// scheduler runs by that name, so the pods stay Pending (see the package comment).
const unscheduledScheduler = "podcreate-unscheduled"

// sysctlPod asks for kernel.shmmax and kernel.sem, like a database's pod.
func sysctlPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "podcreate"}},
		Spec: corev1.PodSpec{
			SchedulerName: unscheduledScheduler,
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
				{Name: "kernel.shmmax", Value: "68719476736"},
				{Name: "kernel.sem", Value: "250 32000 100 128"},
			}},
			Containers: []corev1.Container{{Name: "db", Image: "postgres:17"}},
		},
	}
}

// measurePodCreate creates pods in a fresh namespace at rate pods/s for o.Duration, each sent
// at its scheduled time whatever the earlier ones are doing, then deletes them. When
// profile is set, it saves CPU profiles of serve and kube-apiserver for the length
// of the run (at most maxProfile) in the file it names for each process.
func measurePodCreate(ctx context.Context, client kubernetes.Interface, o PodCreateOptions, rep int, arm string, rate float64, wantPlaced bool, observe observer, profile func(process string) string) (PodCreateRun, error) {
	r := PodCreateRun{Repeat: rep, Arm: arm, Rate: rate, Namespace: fmt.Sprintf("podcreate-%d-%s-%g", rep, arm, rate)}
	if err := createNamespace(ctx, client, r.Namespace, true); err != nil {
		return r, err
	}
	if wantPlaced {
		// The webhook's namespace informer (or the policy's namespace selector) must
		// have seen the namespace, or the first pods would not be placed.
		var last error
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := client.CoreV1().Pods(r.Namespace).Create(ctx, sysctlPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			last = err
			return err == nil && len(got.Spec.NodeSelector) > 0, nil
		})
		if err != nil {
			return r, fmt.Errorf("no dry-run pod was placed in %s: %w (last error: %v)", r.Namespace, err, last)
		}
	}
	sleep(ctx, o.Settle)

	n := int(rate * o.Duration.Seconds())
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, n)
		wg        sync.WaitGroup
	)
	before := observe.sample(ctx)
	var profiled sync.WaitGroup
	if profile != nil {
		seconds := max(1, int(min(o.Duration, maxProfile).Seconds()))
		profiled.Go(func() {
			if err := SaveProfile(ctx, observe.wh.MetricsURL+"/debug/pprof/profile", seconds, profile("serve")); err != nil {
				fmt.Fprintln(o.Log, "podcreate: no CPU profile of serve:", err)
			}
		})
		profiled.Go(func() {
			// The API server serves pprof to an admin (--profiling defaults to true).
			b, err := client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(seconds)).DoRaw(ctx)
			if err == nil {
				err = os.WriteFile(profile("kube-apiserver"), b, 0o644)
			}
			if err != nil {
				fmt.Fprintln(o.Log, "podcreate: no CPU profile of kube-apiserver:", err)
			}
		})
	}
	start := time.Now()
	for i := range n {
		scheduled := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(scheduled); d > 0 {
			sleep(ctx, d)
		}
		if ctx.Err() != nil {
			break
		}
		r.MaxSendLag = max(r.MaxSendLag, time.Since(scheduled))
		r.Sent++
		wg.Go(func() {
			pod, err := client.CoreV1().Pods(r.Namespace).Create(ctx, sysctlPod(fmt.Sprintf("pod-%05d", i)), metav1.CreateOptions{})
			took := time.Since(scheduled)
			mu.Lock()
			defer mu.Unlock()
			latencies = append(latencies, took)
			if err != nil {
				r.Errors++
				if r.ErrorExample == "" {
					r.ErrorExample = err.Error()
				}
				return
			}
			r.Created++
			if len(pod.Spec.NodeSelector) > 0 {
				r.Placed++
			}
		})
	}
	wg.Wait()
	r.Took = time.Since(start)
	profiled.Wait()
	observe.sample(ctx).since(before, &r)
	r.Latencies = Percentiles(latencies)
	r.LoadAverage, _ = LoadAverage()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, deleteNamespace(ctx, client, r.Namespace)
}

// deleteNamespace deletes the run's pods with no grace period, then the namespace,
// and waits until both are gone so the next run starts on a quiet API server.
func deleteNamespace(ctx context.Context, client kubernetes.Interface, name string) error {
	zero := int64(0)
	if err := client.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("could not delete the pods of %s: %w", name, err)
	}
	if err := client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("namespace %s was not deleted within 3 minutes", name)
	}
	return err
}

// observer reads, around each run, the API server's and serve's webhook timings and
// both processes' CPU time, to tell the webhook's own share from the API server's.
type observer struct {
	c  *cluster.Cluster
	wh *cluster.Webhook
}

type sample struct {
	webhook, policy        Histogram
	reviewSum, reviews     float64
	events                 float64
	serveCPU, apiServerCPU time.Duration
}

// admissionPlugin selects the API server's admission plugin metric of one plugin.
func admissionPlugin(name string) map[string]string { return map[string]string{"name": name} }

func (o observer) sample(ctx context.Context) sample {
	var s sample
	if text, err := o.c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx); err == nil {
		s.webhook = ReadHistogram(string(text), "apiserver_admission_webhook_admission_duration_seconds", nil)
		s.policy = ReadHistogram(string(text), "apiserver_admission_controller_admission_duration_seconds", admissionPlugin("MutatingAdmissionPolicy"))
	}
	if code, text, err := o.wh.Get(ctx, "/metrics"); err == nil && code == 200 {
		for _, kind := range []string{"mutating", "validating"} {
			sum, n := HistogramTotals(text, "kubewebhook_"+kind+"_webhook_review_duration_seconds")
			s.reviewSum, s.reviews = s.reviewSum+sum, s.reviews+n
		}
		s.events = MetricSum(text, "sysctl_placement_events_recorded_total")
	}
	if pid := o.wh.PID(); pid > 0 {
		if p, err := process.ReadSample(pid); err == nil {
			s.serveCPU = p.CPU
		}
	}
	if u, err := url.Parse(o.c.URL); err == nil {
		if pid := FindProcess("kube-apiserver", "secure-port="+u.Port()); pid > 0 {
			if p, err := process.ReadSample(pid); err == nil {
				s.apiServerCPU = p.CPU
			}
		}
	}
	return s
}

// since fills r with what happened between before and s.
func (s sample) since(before sample, r *PodCreateRun) {
	r.Webhook = s.webhook.Since(before.webhook)
	r.Policy = s.policy.Since(before.policy)
	if n := s.reviews - before.reviews; n > 0 {
		r.ServeReviews = int(n)
		r.ServeReviewMean = time.Duration((s.reviewSum - before.reviewSum) / n * float64(time.Second))
	}
	r.ServeEvents = int(s.events - before.events)
	if before.serveCPU > 0 {
		r.ServeCPU = s.serveCPU - before.serveCPU
	}
	if before.apiServerCPU > 0 {
		r.APIServerCPU = s.apiServerCPU - before.apiServerCPU
	}
}
