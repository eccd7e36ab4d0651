package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// Names the audit controller uses (package auditevents of the main module).
const (
	reportingController = "sysctl-placement.io/webhook"
	auditLease          = "sysctl-placement-audit-events"
)

// placedEvents lists the sysctl-placement Events with reason about the named pod.
func placedEvents(ctx context.Context, t *testing.T, c *cluster.Cluster, ns, pod, reason string) []eventsv1.Event {
	t.Helper()
	list, err := c.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"regarding.name": pod, "reason": reason,
	}.String()})
	if err != nil {
		t.Fatal(err)
	}
	var ours []eventsv1.Event
	for _, e := range list.Items {
		if e.ReportingController == reportingController {
			ours = append(ours, e)
		}
	}
	return ours
}

// waitForOneEvent waits until the pod has its Event and checks there is exactly one.
func waitForOneEvent(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string, pod corev1.Pod, reason string) eventsv1.Event {
	t.Helper()
	var found []eventsv1.Event
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		found = placedEvents(ctx, t, c, ns, pod.Name, reason)
		return len(found) > 0, nil
	})
	if err != nil {
		t.Fatalf("no %s Event for pod %s: %v", reason, pod.Name, err)
	}
	if len(found) != 1 {
		t.Fatalf("pod %s has %d %s Events, want exactly one", pod.Name, len(found), reason)
	}
	if found[0].Regarding.UID != pod.UID || found[0].Type != corev1.EventTypeNormal {
		t.Errorf("the Event is not a Normal Event regarding pod %s (uid %s): %+v", pod.Name, pod.UID, found[0].Regarding)
	}
	return found[0]
}

func (e *placementEnv) leaderOf(ctx context.Context, t *testing.T) string {
	t.Helper()
	lease, err := e.Client.CoordinationV1().Leases("sysctl-placement").Get(ctx, auditLease, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

func TestAuditEvents(t *testing.T) {
	t.Run("placed pods get exactly one sysctl placed event across two replicas and a leader change", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		second, err := env.StartWebhook(ctx, cluster.WebhookOptions{Name: "webhook-b"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = second.Kill() })

		ns := optedInNamespace(ctx, t, env.Cluster, "audited", nil)
		if _, err := env.client.AppsV1().Deployments(ns).Create(ctx, postgres(2), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods := env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(labels.Set{"app": "postgres"}), 2)
		for _, p := range pods {
			ev := waitForOneEvent(ctx, t, env.Cluster, ns, p, "SysctlPlaced")
			for _, want := range []string{"ipc", "dedicated"} {
				if !strings.Contains(ev.Note, want) {
					t.Errorf("the note %q does not mention %q", ev.Note, want)
				}
			}
		}

		// What users run: kubectl events --for pod/<name>.
		out, err := exec.CommandContext(ctx, filepath.Join(env.BinDir, "kubectl"), "--kubeconfig", env.Kubeconfig,
			"events", "-n", ns, "--for", "pod/"+pods[0].Name).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl events: %v\n%s", err, out)
		}
		if strings.Count(string(out), "SysctlPlaced") != 1 {
			t.Errorf("kubectl events --for pod/%s should show one SysctlPlaced Event:\n%s", pods[0].Name, out)
		}

		// Stop the leader; the other replica takes the Lease over, records nothing twice,
		// and records the Event of a pod created meanwhile.
		leader := env.leaderOf(ctx, t)
		var leading, other *cluster.Webhook
		if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			for _, pair := range [][2]*cluster.Webhook{{env.webhook, second}, {second, env.webhook}} {
				if _, metrics, err := pair[0].Get(ctx, "/metrics"); err == nil && strings.Contains(metrics, "sysctl_placement_events_leader 1") {
					leading, other = pair[0], pair[1]
					return true, nil
				}
			}
			return false, nil
		}); err != nil || leader == "" {
			t.Fatalf("no replica says it leads the audit controller (lease holder %q): %v", leader, err)
		}
		if err := leading.Kill(); err != nil {
			t.Fatal(err)
		}
		if leading == env.webhook {
			if err := env.RegisterWebhook(ctx, other); err != nil {
				t.Fatal(err)
			}
		}
		if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			now := env.leaderOf(ctx, t)
			return now != "" && now != leader, nil
		}); err != nil {
			t.Fatalf("no replica took the audit Lease over from %s: %v", leader, err)
		}
		scale := postgres(3)
		if _, err := env.client.AppsV1().Deployments(ns).Update(ctx, scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pods = env.waitForRunningPods(ctx, t, ns, labels.SelectorFromSet(labels.Set{"app": "postgres"}), 3)
		for _, p := range pods {
			waitForOneEvent(ctx, t, env.Cluster, ns, p, "SysctlPlaced")
		}
	})
}
