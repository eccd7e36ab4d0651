package e2e

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

// The chart synced as Argo CD syncs a Helm chart: rendered with helm template, Helm's
// hooks mapped to Argo's phases (pre-install/pre-upgrade → PreSync, post-install/
// post-upgrade → PostSync, helm.sh/hook-weight → wave; pre-delete, post-delete and
// test hooks are not Argo phases and are left out), each phase applied wave by wave,
// waiting for each wave to be healthy (a Job complete, a Deployment available), and the
// Sync phase's objects all applied at once. Flux's helm-controller runs Helm's own
// install and upgrade, which TestHelmInstallWithWait... covers. Two syncs, the second
// with a changed value, each converge: every webhook pod Ready, pods placed, the
// certificates kept.
func TestAnArgoCDStyleSyncOfTheChartConverges(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{InClusterPods: true})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	image := addShippedPoolsAsRealNodes(ctx, t, c)
	kubectl := kubectlAsAdmin(ctx, t, c)
	// Argo CD's CreateNamespace=true sync option.
	kubectl(nil, "create", "namespace", chartNamespace)
	_, digest, _ := strings.Cut(image.Ref, "@")
	values := []string{"image.repository=" + image.Name, "image.digest=" + digest}

	sync := func(sets ...string) {
		t.Helper()
		started := time.Now()
		_, objs := helmTemplate(ctx, t, append(slices.Clone(values), sets...)...)
		var hooks []*unstructured.Unstructured
		for _, phase := range []string{"PreSync", "Sync", "PostSync"} {
			waves := argoWaves(t, objs, phase)
			for _, wave := range waves {
				var manifests bytes.Buffer
				for _, o := range wave {
					data, err := yaml.Marshal(o.Object)
					if err != nil {
						t.Fatal(err)
					}
					manifests.WriteString("---\n")
					manifests.Write(data)
				}
				if phase != "Sync" {
					// Helm's before-hook-creation is Argo's BeforeHookCreation.
					kubectl(manifests.Bytes(), "delete", "--ignore-not-found", "--wait", "-f", "-")
					hooks = append(hooks, wave...)
				}
				kubectl(manifests.Bytes(), "apply", "--server-side", "--field-manager=argocd-controller", "-f", "-")
				for _, o := range wave {
					waitHealthy(ctx, t, c, o)
				}
			}
		}
		// Hooks whose Helm delete policy says hook-succeeded go once the sync succeeded.
		for _, h := range hooks {
			if strings.Contains(h.GetAnnotations()["helm.sh/hook-delete-policy"], "hook-succeeded") {
				kubectl(nil, "delete", "--ignore-not-found", "-n", chartNamespace, strings.ToLower(h.GetKind()), h.GetName())
			}
		}
		t.Logf("sync converged in %s", time.Since(started).Round(time.Millisecond))
	}

	sync()
	placedOnARealNodeWithItsSysctls(ctx, t, c)
	tlsBefore, caBefore := servingCertificates(ctx, t, c)
	sync("resources.requests.cpu=60m")
	if tlsAfter, caAfter := servingCertificates(ctx, t, c); !bytes.Equal(tlsAfter, tlsBefore) || !bytes.Equal(caAfter, caBefore) {
		t.Error("the second sync replaced the serving certificate or the webhooks' caBundle; want both kept while valid")
	}
	if pool, err := dryRunPoolLabel(ctx, c, "shop"); err != nil || pool != "db-ipc" {
		t.Errorf("after the second sync a pod asking kernel.shmmax went to %q (%v); want db-ipc", pool, err)
	}
}

// argoWaves returns the objects Argo CD syncs in phase, grouped by wave in the order
// it applies them.
func argoWaves(t *testing.T, objs []*unstructured.Unstructured, phase string) [][]*unstructured.Unstructured {
	t.Helper()
	byWave := map[int][]*unstructured.Unstructured{}
	for _, o := range objs {
		hook, isHook := o.GetAnnotations()["helm.sh/hook"]
		objPhase, wave := "Sync", 0
		if isHook {
			objPhase = ""
			for _, event := range strings.Split(hook, ",") {
				switch strings.TrimSpace(event) {
				case "pre-install", "pre-upgrade":
					objPhase = "PreSync"
				case "post-install", "post-upgrade":
					objPhase = "PostSync"
				}
			}
			if w := o.GetAnnotations()["helm.sh/hook-weight"]; w != "" {
				n, err := strconv.Atoi(w)
				if err != nil {
					t.Fatalf("%s/%s: hook weight %q: %v", o.GetKind(), o.GetName(), w, err)
				}
				wave = n
			}
		}
		if objPhase == phase {
			byWave[wave] = append(byWave[wave], o)
		}
	}
	var waves [][]*unstructured.Unstructured
	for _, w := range slices.Sorted(maps.Keys(byWave)) {
		waves = append(waves, byWave[w])
	}
	return waves
}

// waitHealthy waits until o is healthy as Argo CD judges it: a Job complete, a
// Deployment's replicas all updated and available; anything else once applied.
func waitHealthy(ctx context.Context, t *testing.T, c *cluster.Cluster, o *unstructured.Unstructured) {
	t.Helper()
	var healthy func(context.Context) (bool, error)
	switch o.GetKind() {
	case "Job":
		healthy = func(ctx context.Context) (bool, error) {
			j, err := c.Client.BatchV1().Jobs(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range j.Status.Conditions {
				if cond.Status == corev1.ConditionTrue && cond.Type == batchv1.JobFailed {
					t.Fatalf("hook Job %s failed: %s\n%s", j.Name, cond.Message, describePods(ctx, c, o.GetNamespace()))
				}
				if cond.Status == corev1.ConditionTrue && cond.Type == batchv1.JobComplete {
					return true, nil
				}
			}
			return false, nil
		}
	case "Deployment":
		healthy = func(ctx context.Context) (bool, error) {
			d, err := c.Client.AppsV1().Deployments(o.GetNamespace()).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			want := *d.Spec.Replicas
			return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
				d.Status.AvailableReplicas == want && d.Status.Replicas == want, nil
		}
	default:
		return
	}
	if err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, healthy); err != nil {
		t.Fatalf("%s %s never became healthy: %v\n%s", o.GetKind(), o.GetName(), err, describePods(ctx, c, o.GetNamespace()))
	}
}
