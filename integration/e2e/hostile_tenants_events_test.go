package e2e

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// metricValue is the value of one sample in serve's /metrics, 0 when it is absent.
func metricValue(ctx context.Context, wh *cluster.Webhook, sample string) float64 {
	_, body, err := wh.Get(ctx, "/metrics")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// ourEvents lists the Events sysctl-placement recorded in ns.
func ourEvents(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string) int {
	t.Helper()
	list, err := c.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range list.Items {
		if e.ReportingController == reportingController {
			n++
		}
	}
	return n
}

// startRegisteredWebhook starts serve as the shipped ServiceAccount, with the example
// config, and registers it.
func startRegisteredWebhook(ctx context.Context, t *testing.T, c *cluster.Cluster) *cluster.Webhook {
	t.Helper()
	wh, err := c.StartWebhook(ctx, cluster.WebhookOptions{AsServiceAccount: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = wh.Terminate(30 * time.Second)
		if t.Failed() {
			t.Logf("webhook log:\n%s", process.Tail(wh.LogFile, 30))
		}
	})
	if err := c.RegisterWebhook(ctx, wh); err != nil {
		t.Fatal(err)
	}
	return wh
}

// createConcurrently runs create(i) for i in [0, n) on workers goroutines and fails
// the test on the first error.
func createConcurrently(t *testing.T, n, workers int, create func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := create(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestHostileTenantEvents(t *testing.T) {
	// An attacker who may create pods in an opted-in namespace labels them
	// sysctl-placement.io/placed=true with a 250 KiB placement annotation of their own. Pods
	// without sysctls never reach the webhook (its matchConditions), so the label and
	// annotation stay as written; no scheduler binds them. The audit leader, elected while
	// the first half already exists (the relist every new leader does) and watching as the
	// second half arrives, must neither hold them in memory nor turn them into Events.
	t.Run("forged placed pods cost the audit leader no memory nor events", func(t *testing.T) {
		const (
			forged          = 1000
			annotationBytes = 250 << 10
			wellFormed      = 20 // small, parsable forgeries the pod does not carry
			maxGrowth       = 32 << 20
		)
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
		defer cancel()
		createSystemNamespace(ctx, t, c)

		// Another replica holds the audit Lease, so serve starts as a follower and leads
		// only once the test stops renewing it.
		holder := "another-replica"
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: auditLease, Namespace: "sysctl-placement"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: ptr.To[int32](15),
				AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}},
		}
		if _, err := c.Client.CoordinationV1().Leases("sysctl-placement").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		renewCtx, stopRenewing := context.WithCancel(ctx)
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			_ = wait.PollUntilContextCancel(renewCtx, 2*time.Second, false, func(ctx context.Context) (bool, error) {
				l, err := c.Client.CoordinationV1().Leases("sysctl-placement").Get(ctx, auditLease, metav1.GetOptions{})
				if err == nil {
					l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
					_, _ = c.Client.CoordinationV1().Leases("sysctl-placement").Update(ctx, l, metav1.UpdateOptions{})
				}
				return false, nil
			})
		}()
		defer stopRenewing()

		wh := startRegisteredWebhook(ctx, t, c)
		ns := optedInNamespace(ctx, t, c, "attacker", nil)
		before, err := process.ReadSample(wh.PID())
		if err != nil {
			t.Fatal(err)
		}

		padding := strings.Repeat("A", annotationBytes)
		forgedPod := func(i int, annotation string) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					Name:        fmt.Sprintf("forged-%d", i),
					Labels:      map[string]string{"sysctl-placement.io/placed": "true"},
					Annotations: map[string]string{"sysctl-placement.io/placement": annotation},
				},
				Spec: corev1.PodSpec{
					SchedulerName: "no-such-scheduler",
					Containers:    []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
				},
			}
		}
		create := func(i int) error {
			// Valid audit JSON: unknown fields are ignored, so the padding still parses.
			annotation := `{"pools":["ipc"],"nodeSelector":{"sysctl-placement.io/pool":"ipc"},"reason":"Placed","padding":"` + padding + `"}`
			if i >= forged {
				annotation = `{"pools":["ipc"],"nodeSelector":{"sysctl-placement.io/pool":"ipc"},"reason":"Placed"}`
			}
			_, err := c.Client.CoreV1().Pods(ns).Create(ctx, forgedPod(i, annotation), metav1.CreateOptions{})
			return err
		}
		start := time.Now()
		createConcurrently(t, forged/2, 8, create)
		t.Logf("created %d forged pods while another replica leads in %v", forged/2, time.Since(start).Round(time.Second))
		stopRenewing()
		<-renewed
		createConcurrently(t, forged/2+wellFormed, 8, func(i int) error { return create(forged/2 + i) })
		t.Logf("created all %d forged pods in %v", forged+wellFormed, time.Since(start).Round(time.Second))

		// Handled: ruled out by the annotation's size or by what the pod carries, or (as
		// before the fix) recorded.
		var handled float64
		err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			handled = metricValue(ctx, wh, `sysctl_placement_events_dropped_total{cause="oversized"}`) +
				metricValue(ctx, wh, `sysctl_placement_events_skipped_total{cause="not_admitted"}`) +
				metricValue(ctx, wh, `sysctl_placement_events_skipped_total{cause="invalid_audit"}`) +
				float64(ourEvents(ctx, t, c, ns))
			return handled >= forged+wellFormed, nil
		})
		after, rerr := process.ReadSample(wh.PID())
		if rerr != nil {
			t.Fatal(rerr)
		}
		growth := int64(after.HWM) - int64(before.RSS)
		t.Logf("serve: VmRSS %d MiB before, VmHWM %d MiB after (growth %d MiB); %v after the first pod was created",
			before.RSS>>20, after.HWM>>20, growth>>20, time.Since(start).Round(time.Second))
		if err != nil {
			t.Fatalf("the audit leader handled %v of %d forged pods: %v", handled, forged+wellFormed, err)
		}
		if growth >= maxGrowth {
			t.Errorf("serve's peak RSS grew by %d MiB over the forged pods, want less than %d MiB", growth>>20, maxGrowth>>20)
		}
		if n := ourEvents(ctx, t, c, ns); n != 0 {
			t.Errorf("%d Events recorded for forged placed pods, want none", n)
		}
		if got := metricValue(ctx, wh, `sysctl_placement_events_dropped_total{cause="oversized"}`); got != forged {
			t.Errorf(`dropped{cause="oversized"} = %v, want %d`, got, forged)
		}
	})

	// Tenant A floods the webhook with pods no pool can run, each claiming a ReplicaSet of
	// its own (the ownerReference is the pod creator's to write), while tenant B's one
	// ReplicaSet's pod is denied: B's SysctlUnplaceable Event is recorded all the same and
	// promptly, whatever A spends.
	t.Run("one tenants denial flood leaves anothers event prompt", func(t *testing.T) {
		const (
			// More than the recorder's memory of workloads before the fix (4,096) and its
			// queue (1,024): enough to silence every other namespace then.
			flood = 4200
			// The Event of a denial arrives within this, flood or not.
			prompt = 10 * time.Second
		)
		c := cluster.StartForTest(t, cluster.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
		defer cancel()
		createSystemNamespace(ctx, t, c)
		wh := startRegisteredWebhook(ctx, t, c)
		a := optedInNamespace(ctx, t, c, "tenant-a", nil)
		b := optedInNamespace(ctx, t, c, "tenant-b", nil)

		// No pool of the example config allows both.
		unplaceable := func(owner string, uid types.UID) *corev1.Pod {
			return &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{GenerateName: owner + "-", OwnerReferences: []metav1.OwnerReference{{
					APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner, UID: uid, Controller: ptr.To(true)}}},
				Spec: corev1.PodSpec{
					SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.msgmax", Value: "1"}, {Name: "net.core.somaxconn", Value: "1"}}},
					Containers:      []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}},
				},
			}
		}
		deny := func(ns string, pod *corev1.Pod) error {
			_, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
			if err == nil || !strings.Contains(err.Error(), "denied") {
				return fmt.Errorf("pod of %s in %s: %v, want denied", pod.OwnerReferences[0].Name, ns, err)
			}
			return nil
		}

		start := time.Now()
		createConcurrently(t, flood, 16, func(i int) error {
			return deny(a, unplaceable(fmt.Sprintf("flood-%d", i), uuid.NewUUID()))
		})
		t.Logf("tenant-a: %d denied pods of as many ReplicaSets in %v", flood, time.Since(start).Round(time.Second))

		// Tenant A keeps going while B's pod is denied.
		floodCtx, stopFlood := context.WithCancel(ctx)
		flooding := make(chan struct{})
		go func() {
			defer close(flooding)
			for i := flood; floodCtx.Err() == nil; i++ {
				_, _ = c.Client.CoreV1().Pods(a).Create(floodCtx, unplaceable(fmt.Sprintf("flood-%d", i), uuid.NewUUID()), metav1.CreateOptions{})
			}
		}()
		defer func() { stopFlood(); <-flooding }()

		denied := time.Now()
		if err := deny(b, unplaceable("web", uuid.NewUUID())); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, prompt, true, func(ctx context.Context) (bool, error) {
			list, err := c.Client.EventsV1().Events(b).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, e := range list.Items {
				if e.ReportingController == reportingController && e.Reason == "SysctlUnplaceable" && e.Regarding.Name == "web" {
					return true, nil
				}
			}
			return false, nil
		})
		t.Logf("tenant-b's Event after %v; serve: %v dropped for tenant-a's budget, %v for a full queue, %v for too many workloads",
			time.Since(denied).Round(10*time.Millisecond),
			metricValue(ctx, wh, `sysctl_placement_events_dropped_total{cause="namespace_budget"}`),
			metricValue(ctx, wh, `sysctl_placement_events_dropped_total{cause="queue_full"}`),
			metricValue(ctx, wh, `sysctl_placement_events_dropped_total{cause="too_many_workloads"}`))
		if err != nil {
			t.Fatalf("tenant-b's SysctlUnplaceable Event was not recorded within %v of its denial during tenant-a's flood: %v", prompt, err)
		}
	})
}
