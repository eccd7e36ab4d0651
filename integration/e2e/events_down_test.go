package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// breakEvents makes the Events API unavailable to everyone, the way an overloaded or
// broken API server path looks to a client: every Event create (core and
// events.k8s.io) has to pass a validating webhook that nobody serves, with
// failurePolicy Fail, so the API server answers 500 "failed calling webhook".
// It returns the undo.
func breakEvents(ctx context.Context, t *testing.T, c *cluster.Cluster) func() {
	t.Helper()
	dead := "https://127.0.0.1:1/events"
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(1)
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "drill-events-down"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "events-down.drill.sysctl-placement.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &dead},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"", "events.k8s.io"}, APIVersions: []string{"*"}, Resources: []string{"events"}},
			}},
		}},
	}
	admission := c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := admission.Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The configuration takes effect asynchronously: wait until an Event create fails.
	probe := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "probe-"},
		InvolvedObject: corev1.ObjectReference{Kind: "Namespace", Name: "default"},
		Reason:         "Probe", Message: "probe",
	}
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Events("default").Create(ctx, probe, metav1.CreateOptions{})
		return err != nil && strings.Contains(err.Error(), "events-down.drill"), nil
	}); err != nil {
		t.Fatalf("the drill never broke the Events API: %v", err)
	}
	return func() {
		if err := admission.Delete(ctx, cfg.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("could not repair the Events API: %v", err)
		}
	}
}

// failedEventCreates reads from the API server's own metrics how many Event creates
// the broken path has refused so far.
func failedEventCreates(ctx context.Context, c *cluster.Cluster) int {
	raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0
	}
	total := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "apiserver_admission_webhook_rejection_count") && strings.Contains(line, `name="events-down.drill.sysctl-placement.io"`) {
			var n float64
			if _, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &n); err == nil {
				total += int(n)
			}
		}
	}
	return total
}

// createPods creates n placed pods one by one and returns each create's latency.
func createPods(ctx context.Context, t *testing.T, env *placementEnv, ns, prefix string, n int) ([]time.Duration, []string) {
	t.Helper()
	var latencies []time.Duration
	var names []string
	for i := 0; i < n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i)},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.sem", Value: "250 32000 100 128"}}},
				Containers:      []corev1.Container{{Name: "c", Image: "i"}},
			},
		}
		start := time.Now()
		created, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		latencies = append(latencies, time.Since(start))
		if err != nil {
			t.Fatalf("creating pod %s: %v", pod.Name, err)
		}
		if created.Spec.NodeSelector[cluster.PoolLabel] != "ipc" {
			t.Fatalf("pod %s was not placed: %v", pod.Name, created.Spec.NodeSelector)
		}
		names = append(names, created.Name)
	}
	return latencies, names
}

func summary(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("p50 %s max %s", s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

func TestEventsAPIDown(t *testing.T) {
	t.Run("when the events API is down admission goes on and the events follow once it is back", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		ns := optedInNamespace(ctx, t, env.Cluster, "events-down", nil)

		before, beforeNames := createPods(ctx, t, env, ns, "before", 20)
		repair := breakEvents(ctx, t, env.Cluster)
		failedBefore := failedEventCreates(ctx, env.Cluster)
		during, names := createPods(ctx, t, env, ns, "during", 20)
		// Every admission succeeded and placed its pod while no Event could be written.
		t.Logf("pod create latency with the Events API up: %s; down: %s", summary(before), summary(during))
		// Wait until the audit controller has run into the broken API for these pods.
		if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			return failedEventCreates(ctx, env.Cluster) >= failedBefore+len(names), nil
		}); err != nil {
			t.Fatalf("the audit controller never tried to write the Events: %v", err)
		}
		for _, name := range names {
			if got := placedEvents(ctx, t, env.Cluster, ns, name, "SysctlPlaced"); len(got) != 0 {
				t.Fatalf("an Event for %s was written although the Events API was down", name)
			}
		}
		repair()
		// Once the API is back the controller's retries record what was missed, once,
		// for the pods created during the outage and for those whose Events were still
		// being written when it began.
		for _, name := range append(beforeNames, names...) {
			pod, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			waitForOneEvent(ctx, t, env.Cluster, ns, *pod, "SysctlPlaced")
		}
		if _, metrics, err := env.webhook.Get(ctx, "/metrics"); err == nil {
			for _, line := range strings.Split(metrics, "\n") {
				if strings.HasPrefix(line, "sysctl_placement_events_") {
					t.Log(line)
				}
			}
		}
	})
}
