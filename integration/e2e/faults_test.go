package e2e

// Fault drills on the real control plane, each test named for the fault. The numbers
// they measure (failed admissions, latencies, recovery times, log lines) are logged
// with t.Logf under "drill:" so a run's output is the drill report.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

func TestAPIServerStopsAndComesBack(t *testing.T) {
	env := startPlacementEnv(t, cluster.WebhookOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	ns := optedInNamespace(ctx, t, env.Cluster, "outage", nil)
	late := createNamespace(ctx, t, env.Cluster, "labelled-after-restart")
	mustPlace := func(what string) {
		t.Helper()
		resp := postAdmissionReview(ctx, t, env.webhook, "/mutate", ns)
		if !resp.Allowed || len(resp.Patch) == 0 || !bytes.Contains(resp.Patch, []byte("ipc")) {
			t.Fatalf("%s: the webhook did not place the pod from its caches: allowed=%v patch=%s result=%v", what, resp.Allowed, resp.Patch, resp.Result)
		}
	}
	mustPlace("before the outage")
	linesBefore := countProblemLines(t, env.webhook.LogFile)

	if err := env.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Ten seconds down: long enough for every informer to lose its watch and back off.
	const outage = 10 * time.Second
	answered := 0
	for time.Since(stopped) < outage {
		mustPlace("while the API server is down")
		answered++
		if code, body, err := env.webhook.Get(ctx, "/readyz"); err != nil || code != http.StatusOK {
			// Ready means "can answer admissions correctly", which it can from its
			// caches; failing readiness here would pull every replica out of the
			// Service at once, just when the API server comes back.
			t.Fatalf("readiness during the outage: %d %q %v", code, body, err)
		}
		select {
		case <-env.webhook.Exited():
			t.Fatalf("serve exited during the outage: %v", env.webhook.ExitErr())
		default:
		}
		if err := pollPause(ctx, 250*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	linesDuring := countProblemLines(t, env.webhook.LogFile) - linesBefore
	restartBegan := time.Now()
	if err := env.StartAPIServer(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	apiBack := time.Since(restartBegan)

	// The informers resumed: a namespace opted in after the restart is honoured.
	nsObj, err := env.Client.CoreV1().Namespaces().Get(ctx, late, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{"sysctl-placement.io/enabled": "true"}
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	labelled := time.Now()
	// client-go's reflectors retry with a backoff capped at 30s, so the watch may take
	// that long to come back after a 10-second outage.
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pod, err := env.Client.CoreV1().Pods(late).Create(ctx, sysctlPod("after-restart"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil && pod.Spec.NodeSelector[cluster.PoolLabel] == "ipc", nil
	})
	if err != nil {
		t.Fatalf("a namespace opted in after the API server came back is not honoured (informers did not resume): %v\n%s", err, process.Tail(env.webhook.LogFile, 20))
	}
	honoured := time.Since(labelled)
	if code, body, err := env.webhook.Get(ctx, "/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("readiness after the restart: %d %q %v", code, body, err)
	}
	linesTotal := countProblemLines(t, env.webhook.LogFile) - linesBefore
	t.Logf("drill: API server down %s; %d admissions answered from caches meanwhile; API server ready again %s after restart; new namespace label honoured %s after the update; webhook warning/error log lines during the outage %d, until recovery %d",
		outage, answered, apiBack.Round(time.Millisecond), honoured.Round(time.Millisecond), linesDuring, linesTotal)
	// Informers back off (up to 30s between tries), so a 10-second outage costs a few
	// lines per informer, never one per admission or per retry at full speed.
	if linesDuring > 30 || linesTotal > 60 {
		t.Errorf("the outage produced %d log lines (%d until recovery); the webhook must not spam the log:\n%s", linesDuring, linesTotal, process.Tail(env.webhook.LogFile, 30))
	}
}

// replicaSet is a control plane with the default pools and n serve replicas behind a
// loopback load balancer that stands in for the Service.
type replicaSet struct {
	*cluster.Cluster
	replicas []*cluster.Webhook
	lb       *cluster.LoadBalancer
	// fast is an admin client without client-side rate limiting, for bursts.
	fast kubernetes.Interface
}

func startReplicaSet(t *testing.T, n int, extraArgs ...string) *replicaSet {
	t.Helper()
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := c.AddPools(ctx, cluster.DefaultPools()...); err != nil {
		t.Fatal(err)
	}
	createSystemNamespace(ctx, t, c)
	rs := &replicaSet{Cluster: c}
	var backends []cluster.Backend
	for i := range n {
		w, err := c.StartWebhook(ctx, cluster.WebhookOptions{AsServiceAccount: true, Name: fmt.Sprintf("webhook-%d", i), ExtraArgs: extraArgs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = w.Terminate(30 * time.Second)
			if t.Failed() {
				t.Logf("%s:\n%s", w.LogFile, process.Tail(w.LogFile, 20))
			}
		})
		rs.replicas = append(rs.replicas, w)
		backends = append(backends, cluster.Backend{Addr: strings.TrimPrefix(w.URL, "https://"), ReadyURL: w.MetricsURL + "/readyz"})
	}
	lb, err := cluster.StartLoadBalancer(cluster.LoadBalancerOptions{}, backends...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb.Close() })
	rs.lb = lb
	if err := lb.WaitReady(ctx, n, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.RegisterWebhookAt(ctx, "https://"+lb.Addr, rs.replicas[0].CABundle); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side throttling: the burst is the point
	cfg.WarningHandler = rest.NoWarnings{}
	rs.fast = kubernetes.NewForConfigOrDie(cfg)
	return rs
}

// burstResult is what a pod-creation burst measured.
type burstResult struct {
	created   []*corev1.Pod
	failures  []error
	latencies []time.Duration
	took      time.Duration
}

func (b burstResult) summary() string {
	l := slices.Clone(b.latencies)
	slices.Sort(l)
	pct := func(p float64) time.Duration {
		if len(l) == 0 {
			return 0
		}
		return l[min(len(l)-1, int(p*float64(len(l))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("%d created, %d failed in %s; create latency p50 %s p99 %s max %s",
		len(b.created), len(b.failures), b.took.Round(time.Millisecond), pct(0.5), pct(0.99), pct(1))
}

// createBurst creates n pods asking for kernel.shmmax with the given concurrency, and
// calls during(i) after the i-th creation finishes (from one goroutine at a time).
func createBurst(ctx context.Context, client kubernetes.Interface, ns string, n, concurrency int, during func(done int)) burstResult {
	var (
		mu   sync.Mutex
		res  burstResult
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				began := time.Now()
				pod, err := client.CoreV1().Pods(ns).Create(ctx, sysctlPod(fmt.Sprintf("burst-%04d", i)), metav1.CreateOptions{})
				took := time.Since(began)
				mu.Lock()
				res.latencies = append(res.latencies, took)
				if err != nil {
					res.failures = append(res.failures, err)
				} else {
					res.created = append(res.created, pod)
				}
				done := len(res.created) + len(res.failures)
				if during != nil {
					during(done)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.took = time.Since(start)
	return res
}

func TestFaults(t *testing.T) {
	t.Run("SIGTERM of one of two replicas during a 500 pod burst fails no admission", func(t *testing.T) {
		// The drain (readiness 503, Connection: close) must outlast the load balancer's
		// probe period (100ms here; a Service's endpoints take seconds) before the
		// listener closes.
		rs := startReplicaSet(t, 2, "--shutdown-delay", "2s", "--shutdown-grace", "10s")
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, rs.Cluster, "burst-sigterm", nil)

		terminated := make(chan error, 1)
		var signalled sync.Once
		victimIndex := -1
		res := createBurst(ctx, rs.fast, ns, 500, 16, func(done int) {
			if done >= 100 {
				signalled.Do(func() {
					// The replica serving the burst: the API server talks HTTP/2 to a
					// loopback webhook, one connection for every request.
					victimIndex = busiest(rs.lb.Accepted())
					victim := rs.replicas[victimIndex]
					go func() { terminated <- victim.Terminate(30 * time.Second) }()
				})
			}
		})
		var exitErr error
		select {
		case exitErr = <-terminated:
		case <-ctx.Done():
			t.Fatal("the terminated replica did not exit")
		}
		t.Logf("drill: SIGTERM to replica %d after 100 of 500 pods: %s; connections per replica %v; replica exit: %v", victimIndex, res.summary(), rs.lb.Accepted(), exitErr)
		if exitErr != nil {
			t.Errorf("the terminated replica did not exit cleanly: %v", exitErr)
		}
		for i, err := range res.failures {
			if i == 5 {
				break
			}
			t.Errorf("failed admission: %v", err)
		}
		if len(res.failures) > 0 {
			t.Fatalf("%d of 500 admissions failed during a graceful SIGTERM; want 0", len(res.failures))
		}
		for _, p := range res.created {
			if p.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
				t.Fatalf("pod %s was admitted without its placement: %v", p.Name, p.Spec.NodeSelector)
			}
		}
		if accepted := rs.lb.Accepted(); accepted[1-victimIndex] == 0 {
			t.Errorf("the surviving replica took no connections: %v", accepted)
		}
	})

	t.Run("SIGKILL of one of two replicas during a deployment burst fails only in flight admissions which controllers retry", func(t *testing.T) {
		rs := startReplicaSet(t, 2)
		ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, rs.Cluster, "burst-sigkill", nil)

		const deployments, replicas = 10, 50
		began := time.Now()
		for i := range deployments {
			d := postgres(replicas)
			d.Name = fmt.Sprintf("db-%02d", i)
			if _, err := rs.fast.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		countPods := func(ctx context.Context) ([]corev1.Pod, error) {
			list, err := rs.fast.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return nil, err
			}
			return list.Items, nil
		}
		// Kill one replica once about a fifth of the pods exist: the controllers are then
		// creating pods as fast as they can.
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err := countPods(ctx)
			return err == nil && len(pods) >= deployments*replicas/5, nil
		})
		if err != nil {
			t.Fatalf("the burst did not start: %v", err)
		}
		killedAt := time.Now()
		victimIndex := busiest(rs.lb.Accepted())
		if err := rs.replicas[victimIndex].Kill(); err != nil {
			t.Fatal(err)
		}
		var pods []corev1.Pod
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 4*time.Minute, true, func(ctx context.Context) (bool, error) {
			pods, err = countPods(ctx)
			return err == nil && len(pods) >= deployments*replicas, nil
		})
		if err != nil {
			t.Fatalf("the controllers did not create every pod after the kill: %d of %d: %v", len(pods), deployments*replicas, err)
		}
		allCreated := time.Since(began)
		recovered := time.Since(killedAt)
		for _, p := range pods {
			if p.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
				t.Errorf("pod %s was admitted without its placement: %v", p.Name, p.Spec.NodeSelector)
			}
		}
		if len(pods) != deployments*replicas {
			t.Errorf("%d pods exist, want exactly %d", len(pods), deployments*replicas)
		}
		// Failed admissions show up as the ReplicaSets' FailedCreate events; each was
		// retried, since every pod exists.
		events, err := rs.fast.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"reason": "FailedCreate"}.String()})
		if err != nil {
			t.Fatal(err)
		}
		failed := 0
		for _, e := range events.Items {
			if strings.Contains(e.Message, "failed calling webhook") {
				failed += int(max(e.Count, 1))
			}
		}
		t.Logf("drill: SIGKILL to replica %d after %d of %d pods: %d admissions failed (FailedCreate, all retried by the ReplicaSets); all pods created %s after the first Deployment, %s after the kill; connections per replica %v, refused connects %v",
			victimIndex, deployments*replicas/5, deployments*replicas, failed, allCreated.Round(time.Millisecond), recovered.Round(time.Millisecond), rs.lb.Accepted(), rs.lb.Refused())
		// In flight at the kill: at most one request per open connection to the killed
		// replica; the API server's webhook client keeps a bounded pool per host.
		if failed > 100 {
			t.Errorf("%d admissions failed after one replica was killed; only in-flight ones should", failed)
		}
	})

	t.Run("a thousand idle or half sent connections do not delay a real admission", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "slowloris", nil)
		addr := strings.TrimPrefix(env.webhook.URL, "https://")
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(env.webhook.CABundle)

		// 400 connections that never start the TLS handshake, 300 that finish it and send
		// nothing, 300 that send half a request (headers, then a partial body).
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		opened := time.Now()
		for i := range 1000 {
			raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatalf("connection %d: %v (file descriptors: ulimit -n must allow 1000+ per process)", i, err)
			}
			if i < 400 {
				conns = append(conns, raw)
				continue
			}
			tc := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
			if err := tc.HandshakeContext(ctx); err != nil {
				t.Fatalf("handshake %d: %v", i, err)
			}
			conns = append(conns, tc)
			if i >= 700 {
				fmt.Fprintf(tc, "POST /mutate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"kind\":", addr)
			}
		}
		t.Logf("opened 1000 hostile connections in %s", time.Since(opened).Round(time.Millisecond))

		// Real admissions through the API server while they are held open.
		var latencies []time.Duration
		for i := range 20 {
			began := time.Now()
			pod, err := env.Client.CoreV1().Pods(ns).Create(ctx, sysctlPod(fmt.Sprintf("real-%02d", i)), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			latencies = append(latencies, time.Since(began))
			if err != nil {
				t.Fatalf("a real admission failed with 1000 hostile connections open: %v", err)
			}
			if pod.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
				t.Fatalf("a real admission was not placed: %v", pod.Spec.NodeSelector)
			}
		}
		slices.Sort(latencies)
		if worst := latencies[len(latencies)-1]; worst > 3*time.Second {
			t.Errorf("a real admission took %s, beyond the webhook's 3s timeout", worst)
		}

		// The server's timeouts reclaim every hostile connection: the TLS handshake and
		// the request headers within ReadHeaderTimeout (5s), the body within ReadTimeout
		// (15s). Each read below returns once the server has closed the connection.
		closedBy := make([]time.Duration, len(conns))
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(40 * time.Second))
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						closedBy[i] = time.Since(opened)
						if ne, ok := err.(net.Error); ok && ne.Timeout() {
							closedBy[i] = -1 // still open at the deadline
						}
						return
					}
				}
			}()
		}
		wg.Wait()
		stillOpen := 0
		var slowest time.Duration
		for _, d := range closedBy {
			if d < 0 {
				stillOpen++
			}
			slowest = max(slowest, d)
		}
		t.Logf("drill: 1000 idle/half-sent connections: real admission latency p50 %s max %s; server closed them all within %s of opening (%d still open after 40s)",
			latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), slowest.Round(time.Millisecond), stillOpen)
		if stillOpen > 0 {
			t.Errorf("%d hostile connections were never closed by the server", stillOpen)
		}
		select {
		case <-env.webhook.Exited():
			t.Fatalf("serve exited: %v", env.webhook.ExitErr())
		default:
		}
	})
}

// busiest returns the index of the largest count.
func busiest(counts []int64) int {
	best := 0
	for i, c := range counts {
		if c > counts[best] {
			best = i
		}
	}
	return best
}

// postAdmissionReview sends the webhook an AdmissionReview for a pod asking for
// kernel.shmmax in ns, as the API server would, and returns the response.
func postAdmissionReview(ctx context.Context, t *testing.T, w *cluster.Webhook, path, ns string) *admissionv1.AdmissionResponse {
	t.Helper()
	pod := sysctlPod("direct")
	pod.Namespace = ns
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(fmt.Sprintf("drill-%d", time.Now().UnixNano())),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.HTTPSClient().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil {
		t.Fatalf("POST %s answered %d %s: %v", path, resp.StatusCode, data, err)
	}
	return out.Response
}

// countProblemLines counts the warning and error lines of a serve log: logrus's
// level=warning/error/fatal and klog's W/E/F lines (client-go's reflectors). Request
// logs at info and debug level are not problems.
func countProblemLines(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "level=warning") || strings.Contains(line, "level=error") || strings.Contains(line, "level=fatal") ||
			len(line) > 5 && strings.ContainsRune("WEF", rune(line[0])) && line[1] >= '0' && line[1] <= '9' {
			n++
		}
	}
	return n
}
