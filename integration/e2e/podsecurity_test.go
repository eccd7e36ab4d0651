package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

const (
	psaEnforce        = "pod-security.kubernetes.io/enforce"
	psaConflictGauge  = "sysctl_placement_namespaces_pod_security_conflict"
	ourPSAExplanation = "forbidden by Pod Security: namespace shop-psa enforces baseline:latest"
)

// dryRunPostgresPod creates one pod of the postgres Deployment's template with
// dry run: it goes through both webhooks and Pod Security, and is stored nowhere.
func dryRunPostgresPod(ctx context.Context, env *placementEnv, ns string) error {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}, Spec: postgres(1).Spec.Template.Spec}
	_, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

func TestPodSecurityEvents(t *testing.T) {
	t.Run("under pod security baseline the failed create event explains and under privileged the pods run", func(t *testing.T) {
		env := startPlacementEnv(t, cluster.WebhookOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop-psa", Labels: map[string]string{
			"sysctl-placement.io/enabled": "true", psaEnforce: "baseline",
		}}}
		if _, err := env.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}

		// Once the webhook's namespace cache has the labels, its mutating webhook denies the
		// pod before the API server's own PodSecurity check (which runs before any
		// validating webhook) can refuse it with the bare "forbidden sysctls".
		var last error
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			last = dryRunPostgresPod(ctx, env, ns.Name)
			return last != nil && strings.Contains(last.Error(), ourPSAExplanation), nil
		})
		if err != nil {
			t.Fatalf("a pod in the namespace enforcing baseline was never denied with our explanation; last answer: %v", last)
		}
		metricEquals(ctx, t, env.webhook, psaConflictGauge, "1")

		// The user deploys unchanged. PSA enforces on pods only: the Deployment is stored,
		// and we warn that its pods will be refused.
		if _, err := env.client.AppsV1().Deployments(ns.Name).Create(ctx, postgres(2), metav1.CreateOptions{}); err != nil {
			t.Fatalf("the Deployment itself must be accepted: %v", err)
		}
		if !env.warnings.contains("Pod Security baseline:latest (enforce) forbids kernel.shmmax") || !env.warnings.contains("enforce=privileged") {
			t.Errorf("creating the Deployment gave no warning naming the level, the sysctls and the fix; warnings: %v", env.warnings.all())
		}

		var failed corev1.Event
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			events, err := env.Client.CoreV1().Events(ns.Name).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"reason": "FailedCreate"}.String()})
			if err != nil {
				return false, err
			}
			for _, e := range events.Items {
				if e.InvolvedObject.Kind == "ReplicaSet" && strings.Contains(e.Message, ourPSAExplanation) {
					failed = e
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("the ReplicaSet's FailedCreate Event does not carry our explanation: %v", err)
		}
		t.Logf("the ReplicaSet's FailedCreate Event: %s", failed.Message)
		for _, want := range []string{"admission webhook", "kernel.shmmax, kernel.sem", "pod-security.kubernetes.io/enforce=privileged", "sysctl-placement.io/pod-security-exempt=true"} {
			if !strings.Contains(failed.Message, want) {
				t.Errorf("the FailedCreate Event %q lacks %q", failed.Message, want)
			}
		}
		// Our own Event on the ReplicaSet says the same (the pod never exists).
		err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			events, err := env.Client.EventsV1().Events(ns.Name).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"reason": "SysctlForbiddenByPodSecurity"}.String()})
			if err != nil {
				return false, err
			}
			for _, e := range events.Items {
				if e.Regarding.Kind == "ReplicaSet" && e.ReportingController == reportingController && strings.Contains(e.Note, ourPSAExplanation) {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Errorf("no SysctlForbiddenByPodSecurity Event on the ReplicaSet: %v", err)
		}
		if pods, err := env.Client.CoreV1().Pods(ns.Name).List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) != 0 {
			t.Fatalf("pods exist in a namespace that refuses them: %v %v", pods, err)
		}

		// The fix the message names: the namespace enforces privileged.
		patch := []byte(`{"metadata":{"labels":{"` + psaEnforce + `":"privileged"}}}`)
		if _, err := env.Client.CoreV1().Namespaces().Patch(ctx, ns.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			last = dryRunPostgresPod(ctx, env, ns.Name)
			return last == nil, nil
		})
		if err != nil {
			t.Fatalf("a pod in the namespace relabelled privileged is still denied: %v", last)
		}
		metricEquals(ctx, t, env.webhook, psaConflictGauge, "0")
		// The ReplicaSet retries with an exponential backoff after each refusal; touching
		// it makes its controller sync now (the Deployment itself stays unchanged).
		rss, err := env.Client.AppsV1().ReplicaSets(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil || len(rss.Items) != 1 {
			t.Fatalf("want the Deployment's one ReplicaSet, got %v %v", rss, err)
		}
		touch := []byte(`{"metadata":{"annotations":{"e2e.sysctl-placement.io/nudge":"1"}}}`)
		if _, err := env.Client.AppsV1().ReplicaSets(ns.Name).Patch(ctx, rss.Items[0].Name, types.MergePatchType, touch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, p := range env.waitForRunningPods(ctx, t, ns.Name, labels.SelectorFromSet(labels.Set{"app": "postgres"}), 2) {
			if pool := env.poolOf(ctx, t, &p); pool != "ipc" {
				t.Errorf("pod %s runs in pool %q, want ipc", p.Name, pool)
			}
		}

		// Why the denial must come from the mutating webhook: a pod that both PodSecurity
		// and our validating webhook refuse (a user.* sysctl in the host user namespace, a
		// flagged clash the validating webhook denies) gets PodSecurity's answer, because
		// the API server runs it before any validating webhook. Our mutating webhook's
		// warning about the clash proves it saw the pod with the namespace in its cache.
		order := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "psa-order",
			Labels: map[string]string{"sysctl-placement.io/enabled": "true", psaEnforce: "baseline"}}}
		if _, err := env.Client.CoreV1().Namespaces().Create(ctx, order, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		userns := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "userns-"}, Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "user.max_user_namespaces", Value: "100"}}},
			Containers:      []corev1.Container{{Name: "c", Image: "i"}},
		}}
		seen := &warningRecorder{}
		cfg := rest.CopyConfig(env.Config)
		cfg.WarningHandler = seen
		watched := kubernetes.NewForConfigOrDie(cfg)
		err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			_, last = watched.CoreV1().Pods(order.Name).Create(ctx, userns, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return seen.contains("hostUsers with user.max_user_namespaces"), nil
		})
		if err != nil {
			t.Fatalf("the mutating webhook never warned about the clash; last answer %v", last)
		}
		if last == nil || !strings.Contains(last.Error(), `violates PodSecurity "baseline:latest": forbidden sysctls (user.max_user_namespaces)`) ||
			strings.Contains(last.Error(), "conflict: pod.spec.hostUsers") {
			t.Errorf("want PodSecurity's own refusal, before the validating webhook's; got %v", last)
		}

		log, err := os.ReadFile(env.webhook.LogFile)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "namespace opted in to sysctl-placement but enforces Pod Security baseline:latest") && strings.Contains(line, "shop-psa") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("serve logged the conflicting namespace shop-psa %d times, want once", n)
		}
	})
}
