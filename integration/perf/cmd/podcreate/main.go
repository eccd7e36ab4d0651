// Command podcreate measures what the webhook adds to pod creation end to end: on
// the integration control plane with the default pools, it creates -pods pods asking
// for kernel.shmmax and kernel.sem from -clients concurrent clients in a fresh
// opted-in namespace (label sysctl-placement.io/enabled=true), once with the real
// `serve` registered through the shipped webhook configurations and once with no
// webhook configuration at all, and records each Create call's latency as the client
// sees it. Runs alternate which goes first; each namespace is deleted (pods with no
// grace period) before the next run.
//
// Run it from integration/ after `go tool task control-plane`; `go tool task bench`
// runs it and perf/cmd/report reads its JSON:
//
//	go run ./perf/cmd/podcreate -out /tmp/podcreate.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/perf"
)

// labelEnabled opts a namespace in (scheduling.LabelEnabled; the integration module
// does not import the main module). The shipped webhooks select on it.
const labelEnabled = "sysctl-placement.io/enabled"

type options struct {
	out     string
	pods    int
	clients int
	repeat  int
	qps     float64
	burst   int
	settle  time.Duration
	keep    bool
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "", "write the results as JSON to this file (required)")
	flag.IntVar(&o.pods, "pods", 2000, "pods created in each run")
	flag.IntVar(&o.clients, "clients", 50, "concurrent clients creating them")
	flag.IntVar(&o.repeat, "repeat", 2, "runs with and without the webhook (each, alternating which goes first)")
	flag.Float64Var(&o.qps, "qps", -1, "client-side rate limit in requests/s; negative: none, so throttling never dominates")
	flag.IntVar(&o.burst, "burst", 0, "client-side burst (with -qps > 0)")
	flag.DurationVar(&o.settle, "settle", 3*time.Second, "wait before each run, after the previous namespace is gone")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (component and webhook logs)")
	flag.Parse()
	switch {
	case o.out == "":
		fmt.Fprintln(os.Stderr, "podcreate: -out is required: the JSON file perf/cmd/report reads")
		os.Exit(2)
	case o.pods < 1 || o.pods > 20000 || o.clients < 1 || o.clients > 500 || o.repeat < 1 || o.repeat > 10:
		fmt.Fprintln(os.Stderr, "podcreate: want 1 ≤ -pods ≤ 20000, 1 ≤ -clients ≤ 500 and 1 ≤ -repeat ≤ 10")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "podcreate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	work, err := os.MkdirTemp("", "sysctl-placement-podcreate-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("work directory (kept):", work)
	} else {
		defer os.RemoveAll(work)
	}
	fmt.Println("starting the control plane (package cluster) with the default pools")
	c, err := cluster.Start(ctx, cluster.Options{WorkDir: filepath.Join(work, "cluster")})
	if err != nil {
		return err
	}
	defer c.Stop()
	if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
		return err
	}
	// The webhook's own namespace, for its audit-events leader election.
	if err := createNamespace(ctx, c.Client, "sysctl-placement", false); err != nil {
		return err
	}
	// Production logging (JSON at info level, one line per admission), not the
	// harness's --development text at debug level.
	wh, err := c.StartWebhook(ctx, cluster.WebhookOptions{ExtraArgs: []string{"--development=false"}})
	if err != nil {
		return fmt.Errorf("could not start the webhook: %w", err)
	}
	defer wh.Terminate(10 * time.Second)

	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.WarningHandler = rest.NoWarnings{}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	observe := observer{c: c, wh: wh}
	results := &perf.PodCreateResults{Started: time.Now().UTC(), Pods: o.pods, Clients: o.clients, QPS: cfg.QPS, Burst: cfg.Burst}
	for rep := 1; rep <= o.repeat; rep++ {
		order := []bool{false, true}
		if rep%2 == 0 {
			order = []bool{true, false}
		}
		for _, withWebhook := range order {
			if err := setWebhook(ctx, c, wh, withWebhook); err != nil {
				return fmt.Errorf("could not set the webhook registered=%t: %w", withWebhook, err)
			}
			r, err := measure(ctx, client, o, rep, withWebhook, observe)
			if err != nil {
				return err
			}
			results.Runs = append(results.Runs, r)
			fmt.Printf("#%d webhook=%-5t %d created, %d errors, %d placed in %s (%.0f pods/s): p50 %s p90 %s p99 %s max %s  load avg %.1f\n",
				r.Repeat, r.Webhook, r.Created, r.Errors, r.Placed, r.Took.Round(time.Millisecond), float64(r.Created)/r.Took.Seconds(),
				r.P50.Round(time.Microsecond), r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond), r.LoadAverage)
			fmt.Printf("    webhook calls %d (mean %s as the API server saw them), serve reviews %d (mean %s inside serve); CPU serve %s, kube-apiserver %s\n",
				r.WebhookCalls, r.WebhookCallMean.Round(time.Microsecond), r.ServeReviews, r.ServeReviewMean.Round(time.Microsecond),
				r.ServeCPU.Round(time.Millisecond), r.APIServerCPU.Round(time.Millisecond))
			if r.ErrorExample != "" {
				fmt.Println("    e.g.", r.ErrorExample)
			}
		}
	}
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("could not write the results: %w", err)
	}
	fmt.Println("results written to", o.out)
	return nil
}

// setWebhook registers the shipped configurations pointed at wh (RegisterWebhook
// waits until the API server calls it), or deletes them and waits until a dry-run
// pod comes back unplaced.
func setWebhook(ctx context.Context, c *cluster.Cluster, wh *cluster.Webhook, on bool) error {
	if on {
		return c.RegisterWebhook(ctx, wh)
	}
	m, v, err := c.ShippedWebhookConfigurations(ctx)
	if err != nil {
		return err
	}
	admission := c.Client.AdmissionregistrationV1()
	if err := admission.MutatingWebhookConfigurations().Delete(ctx, m.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err := admission.ValidatingWebhookConfigurations().Delete(ctx, v.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	const probeNS = "podcreate-probe"
	if err := createNamespace(ctx, c.Client, probeNS, true); err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := c.Client.CoreV1().Pods(probeNS).Create(ctx, sysctlPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			// The webhook may still be called and fail closed; try again.
			last = err
			return false, nil
		}
		last = fmt.Errorf("a dry-run pod is still placed: nodeSelector %v", got.Spec.NodeSelector)
		return len(got.Spec.NodeSelector) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the API server still calls the webhook: %w (last: %v)", err, last)
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

// sysctlPod asks for kernel.shmmax and kernel.sem, like a database's pod.
func sysctlPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "podcreate"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{
				{Name: "kernel.shmmax", Value: "68719476736"},
				{Name: "kernel.sem", Value: "250 32000 100 128"},
			}},
			Containers: []corev1.Container{{Name: "db", Image: "postgres:17"}},
		},
	}
}

// measure creates o.pods pods in a fresh namespace and deletes them afterwards.
func measure(ctx context.Context, client kubernetes.Interface, o options, rep int, withWebhook bool, observe observer) (perf.PodCreateRun, error) {
	r := perf.PodCreateRun{Repeat: rep, Webhook: withWebhook, Namespace: fmt.Sprintf("podcreate-%d-without", rep)}
	if withWebhook {
		r.Namespace = fmt.Sprintf("podcreate-%d-with", rep)
	}
	if err := createNamespace(ctx, client, r.Namespace, true); err != nil {
		return r, err
	}
	if withWebhook {
		// The webhook's namespace informer must have seen the namespace, or it would
		// not place the first pods.
		var last error
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := client.CoreV1().Pods(r.Namespace).Create(ctx, sysctlPod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			last = err
			return err == nil && len(got.Spec.NodeSelector) > 0, nil
		})
		if err != nil {
			return r, fmt.Errorf("the webhook never placed a dry-run pod in %s: %w (last error: %v)", r.Namespace, err, last)
		}
	}
	sleep(ctx, o.settle)

	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, o.pods)
		next      atomic.Int64
		wg        sync.WaitGroup
	)
	before := observe.sample(ctx)
	start := time.Now()
	for range o.clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > o.pods {
					return
				}
				began := time.Now()
				pod, err := client.CoreV1().Pods(r.Namespace).Create(ctx, sysctlPod(fmt.Sprintf("pod-%05d", i)), metav1.CreateOptions{})
				took := time.Since(began)
				mu.Lock()
				latencies = append(latencies, took)
				if err != nil {
					r.Errors++
					if r.ErrorExample == "" {
						r.ErrorExample = err.Error()
					}
				} else {
					r.Created++
					if len(pod.Spec.NodeSelector) > 0 {
						r.Placed++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.Took = time.Since(start)
	observe.sample(ctx).since(before, &r)
	r.Latencies = perf.Percentiles(latencies)
	r.LoadAverage, _ = perf.LoadAverage()
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
	callSum, calls, reviewSum, reviews float64
	serveCPU, apiServerCPU             time.Duration
}

func (o observer) sample(ctx context.Context) sample {
	var s sample
	if text, err := o.c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx); err == nil {
		s.callSum, s.calls = perf.HistogramTotals(string(text), "apiserver_admission_webhook_admission_duration_seconds")
	}
	if code, text, err := o.wh.Get(ctx, "/metrics"); err == nil && code == 200 {
		for _, kind := range []string{"mutating", "validating"} {
			sum, n := perf.HistogramTotals(text, "kubewebhook_"+kind+"_webhook_review_duration_seconds")
			s.reviewSum, s.reviews = s.reviewSum+sum, s.reviews+n
		}
	}
	if pid := perf.FindProcess("sysctl-placement", "serve", strings.TrimPrefix(o.wh.URL, "https://")); pid > 0 {
		if p, err := perf.ReadProc(pid); err == nil {
			s.serveCPU = p.CPU
		}
	}
	if u, err := url.Parse(o.c.URL); err == nil {
		if pid := perf.FindProcess("kube-apiserver", "secure-port="+u.Port()); pid > 0 {
			if p, err := perf.ReadProc(pid); err == nil {
				s.apiServerCPU = p.CPU
			}
		}
	}
	return s
}

// since fills r with what happened between before and s.
func (s sample) since(before sample, r *perf.PodCreateRun) {
	if n := s.calls - before.calls; n > 0 {
		r.WebhookCalls = int(n)
		r.WebhookCallMean = time.Duration((s.callSum - before.callSum) / n * float64(time.Second))
	}
	if n := s.reviews - before.reviews; n > 0 {
		r.ServeReviews = int(n)
		r.ServeReviewMean = time.Duration((s.reviewSum - before.reviewSum) / n * float64(time.Second))
	}
	if before.serveCPU > 0 {
		r.ServeCPU = s.serveCPU - before.serveCPU
	}
	if before.apiServerCPU > 0 {
		r.APIServerCPU = s.apiServerCPU - before.apiServerCPU
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
