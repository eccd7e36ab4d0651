package e2e

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	certutil "k8s.io/client-go/util/cert"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
)

func TestHelmInstall(t *testing.T) {
	// The chart installed as most teams install it: Helm v4's own CLI, `helm install
	// --wait --rollback-on-failure`, on real nodes that are the chart's default pools, with
	// the image `go tool task image` built. --wait holds the install until every webhook
	// pod is Ready, which it can only be once the TLS Secret exists: the chart makes it in
	// a pre-install hook (a post-install hook would run only after the wait, and the
	// install would hang until its timeout). Installed, the webhook places a Deployment
	// on db-ipc; uninstalled, no webhook configuration is left to refuse pods.
	t.Run("helm install with wait succeeds on real nodes and uninstall leaves no webhook", func(t *testing.T) {
		helmBin, err := cluster.Helm.Path()
		if err != nil {
			t.Fatal(err)
		}
		c := cluster.StartForTest(t, cluster.Options{InClusterPods: true})
		// Longer than the helm commands' own timeouts added up, so that a slow step is
		// reported by helm.
		ctx, cancel := context.WithTimeout(t.Context(), 13*time.Minute)
		defer cancel()
		image := addShippedPoolsAsRealNodes(ctx, t, c)

		home := t.TempDir()
		// helmRun runs a helm command and returns its output and error.
		helmRun := func(args ...string) ([]byte, error) {
			started := time.Now()
			cmd := exec.CommandContext(ctx, helmBin, append(args, "--kubeconfig", c.Kubeconfig)...)
			cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(home, "cache"),
				"HELM_CONFIG_HOME="+filepath.Join(home, "config"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
			out, err := cmd.CombinedOutput()
			t.Logf("helm %s took %s", args[0], time.Since(started).Round(time.Millisecond))
			return out, err
		}
		helm := func(args ...string) []byte {
			t.Helper()
			out, err := helmRun(args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s\nthe webhook's namespace:\n%s", strings.Join(args, " "), err, out, describePods(ctx, c, "sysctl-placement"))
			}
			return out
		}
		// The chart as `go tool task release` publishes it: a .tgz whose values pin the
		// image by digest, so the install sets no image value.
		chart := packagedChart(ctx, t, image)
		helm("install", "sysctl-placement", chart, "-n", "sysctl-placement", "--create-namespace",
			"--wait", "--rollback-on-failure", "--timeout", "3m")
		_, digest, _ := strings.Cut(image.Ref, "@")
		if got, want := deploymentImage(ctx, t, c), image.Name+"@"+digest; got != want {
			t.Errorf("the packaged chart runs the image %q; want %q, the one `task image` built, by digest", got, want)
		}
		placedOnARealNodeWithItsSysctls(ctx, t, c)

		// helm test runs `sysctl-placement doctor` in a pod: a good install passes, and
		// with a caBundle of another CA it fails and says so.
		if out := helm("test", "sysctl-placement", "-n", "sysctl-placement", "--logs", "--timeout", "2m"); !strings.Contains(string(out), "placed: a pod asking for kernel.msgmax=65536") {
			t.Errorf("helm test passed, but its log does not say where the pod went:\n%s", out)
		}
		_, goodCA := servingCertificates(ctx, t, c)
		setCABundles(ctx, t, c, otherCA(t))
		out, err := helmRun("test", "sysctl-placement", "-n", "sysctl-placement", "--logs", "--timeout", "2m")
		if err == nil || !strings.Contains(string(out), "caBundle: the API server does not trust the webhook's serving certificate") {
			t.Errorf("helm test with the caBundle of another CA: %v; want a failure naming the caBundle, output:\n%s", err, out)
		}
		setCABundles(ctx, t, c, goodCA)

		// An upgrade that rolls the webhook's pods, under a steady stream of pods to
		// admit: not one may be refused or left unplaced, and the certificates stay.
		tlsBefore, caBefore := servingCertificates(ctx, t, c)
		stream := startAdmissionStream(ctx, c, "shop")
		helm("upgrade", "sysctl-placement", chart, "-n", "sysctl-placement",
			"--wait", "--rollback-on-failure", "--timeout", "3m", "--set", "resources.requests.cpu=60m")
		admitted, failures := stream.stop()
		t.Logf("during the upgrade %d pods were admitted, %d failed", admitted, len(failures))
		if admitted == 0 || len(failures) > 0 {
			t.Errorf("during helm upgrade %d pods were admitted and %d refused or unplaced; want none refused, e.g. %v", admitted, len(failures), failures[:min(3, len(failures))])
		}
		if tlsAfter, caAfter := servingCertificates(ctx, t, c); !bytes.Equal(tlsAfter, tlsBefore) || !bytes.Equal(caAfter, caBefore) {
			t.Error("helm upgrade replaced the serving certificate or the webhooks' caBundle; want both kept while valid")
		}
		helm("rollback", "sysctl-placement", "1", "-n", "sysctl-placement", "--wait", "--timeout", "3m")
		if pool, err := dryRunPoolLabel(ctx, c, "shop"); err != nil || pool != "db-ipc" {
			t.Errorf("after helm rollback a pod asking kernel.shmmax went to %q (%v); want db-ipc", pool, err)
		}

		// What uninstall deletes, in the order the API server saw it: the webhook
		// configurations must go before the webhook's pods can, or pods with sysctls in
		// opted-in namespaces are refused in between.
		deletions := watchDeletions(ctx, t, c)
		helm("uninstall", "sysctl-placement", "-n", "sysctl-placement", "--wait", "--timeout", "2m")
		order := deletions.stop()
		t.Logf("deleted, in order: %v", order)
		webhooksGone, podsGoing := slices.Index(order, "MutatingWebhookConfiguration"), slices.Index(order, "Deployment")
		if vwc := slices.Index(order, "ValidatingWebhookConfiguration"); vwc > webhooksGone {
			webhooksGone = vwc
		}
		if webhooksGone < 0 || podsGoing < 0 || webhooksGone > podsGoing {
			t.Errorf("helm uninstall deleted %v; want both webhook configurations deleted before the Deployment", order)
		}
		adm := c.Client.AdmissionregistrationV1()
		if _, err := adm.MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{}); err == nil {
			t.Error("after helm uninstall the MutatingWebhookConfiguration sysctl-placement is still there")
		}
		if _, err := adm.ValidatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{}); err == nil {
			t.Error("after helm uninstall the ValidatingWebhookConfiguration sysctl-placement is still there")
		}
		// What no manifest held is gone too: the Secrets certs made, the Leases, and
		// everything helm test made.
		for _, name := range []string{"sysctl-placement-tls", "sysctl-placement-ca"} {
			if _, err := c.Client.CoreV1().Secrets("sysctl-placement").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("after helm uninstall the Secret %s: %v; want it deleted", name, err)
			}
		}
		for _, name := range []string{"sysctl-placement-discovery", "sysctl-placement-audit-events"} {
			if _, err := c.Client.CoordinationV1().Leases("sysctl-placement").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("after helm uninstall the Lease %s: %v; want it deleted", name, err)
			}
		}
		if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "sysctl-placement-doctor", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after helm test and uninstall the test namespace sysctl-placement-doctor: %v; want it deleted", err)
		}
		// The namespace is still labelled as opted in; with the webhook gone its pods are
		// admitted as they would be without it.
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "after-uninstall-"},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "kernel.shmmax", Value: "68719476736"}}},
				Containers:      []corev1.Container{{Name: "c", Image: cluster.ProbeImage}},
			},
		}
		if _, err := c.Client.CoreV1().Pods("shop").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("after helm uninstall a pod in the formerly opted-in namespace is refused: %v", err)
		}
	})
}

// packagedChart packages the chart as the release does, pinned to image, and returns
// the .tgz's path.
func packagedChart(ctx context.Context, t *testing.T, image cluster.ReleaseImage) string {
	t.Helper()
	bin, err := cluster.PackageChart.Path()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if b, err := exec.CommandContext(ctx, bin, "-image-dir", image.Dir, "-out", out).CombinedOutput(); err != nil {
		t.Fatalf("package-chart: %v\n%s", err, b)
	} else {
		t.Logf("packaged: %s", b)
	}
	tgz, err := filepath.Glob(filepath.Join(out, "sysctl-placement-*.tgz"))
	if err != nil || len(tgz) != 1 {
		t.Fatalf("package-chart wrote %v (%v); want one sysctl-placement-<version>.tgz", tgz, err)
	}
	return tgz[0]
}

// deploymentImage is the image of the webhook Deployment's first container.
func deploymentImage(ctx context.Context, t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	d, err := c.Client.AppsV1().Deployments("sysctl-placement").Get(ctx, "sysctl-placement", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Spec.Containers[0].Image
}

// setCABundles sets the caBundle of every webhook of both configurations.
func setCABundles(ctx context.Context, t *testing.T, c *cluster.Cluster, bundle []byte) {
	t.Helper()
	adm := c.Client.AdmissionregistrationV1()
	m, err := adm.MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Webhooks {
		m.Webhooks[i].ClientConfig.CABundle = bundle
	}
	if _, err := adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err := adm.ValidatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range v.Webhooks {
		v.Webhooks[i].ClientConfig.CABundle = bundle
	}
	if _, err := adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// otherCA is the PEM of a CA that signed nothing the webhook serves.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: "not-the-webhooks-ca"}, key)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := certutil.EncodeCertificates(ca)
	if err != nil {
		t.Fatal(err)
	}
	return pem
}

// servingCertificates returns the webhook's serving certificate and the mutating
// webhook's caBundle.
func servingCertificates(ctx context.Context, t *testing.T, c *cluster.Cluster) (tls, caBundle []byte) {
	t.Helper()
	secret, err := c.Client.CoreV1().Secrets("sysctl-placement").Get(ctx, "sysctl-placement-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sysctl-placement", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return secret.Data["tls.crt"], m.Webhooks[0].ClientConfig.CABundle
}

// dryRunPoolLabel dry-run creates a pod asking kernel.shmmax in ns and returns the
// pool the webhook put in its nodeSelector (the shipped config's label).
func dryRunPoolLabel(ctx context.Context, c *cluster.Cluster, ns string) (string, error) {
	pod, err := dryRunPod(ctx, c.Client, ns, "kernel.shmmax")
	if err != nil {
		return "", err
	}
	return pod.Spec.NodeSelector[gkePool], nil
}

// admissionStream dry-run creates pods with a sysctl, one after another, until
// stopped, and keeps what went wrong.
type admissionStream struct {
	cancel   context.CancelFunc
	done     chan struct{}
	admitted int
	failures []string
}

func startAdmissionStream(ctx context.Context, c *cluster.Cluster, ns string) *admissionStream {
	ctx, cancel := context.WithCancel(ctx)
	s := &admissionStream{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ticker := time.NewTicker(50 * time.Millisecond)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			pool, err := dryRunPoolLabel(ctx, c, ns)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				s.failures = append(s.failures, err.Error())
			case pool != "db-ipc":
				s.failures = append(s.failures, fmt.Sprintf("admitted unplaced (pool %q)", pool))
			default:
				s.admitted++
			}
		}
	}()
	return s
}

// stop ends the stream and returns how many pods were admitted and placed, and the
// failures.
func (s *admissionStream) stop() (int, []string) {
	s.cancel()
	<-s.done
	return s.admitted, s.failures
}

// deletionWatch records the deletions of the webhook's objects.
type deletionWatch struct {
	cancel  context.CancelFunc
	done    chan struct{}
	deleted []deletion
}

// deletion is a deleted object's kind and the resourceVersion of its deletion.
type deletion struct {
	kind string
	rv   int64
}

// watchDeletions watches the two webhook configurations and the webhook's Deployment
// and Service, and records each deletion. The order is the resourceVersions': the one
// etcd revision counter every object shares, so it is the order of the deletes
// themselves, whatever order the four watches deliver them in.
func watchDeletions(ctx context.Context, t *testing.T, c *cluster.Cluster) *deletionWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	d := &deletionWatch{cancel: cancel, done: make(chan struct{})}
	byName := metav1.ListOptions{FieldSelector: "metadata.name=sysctl-placement"}
	var watches []watch.Interface
	for _, start := range []func() (watch.Interface, error){
		func() (watch.Interface, error) {
			return c.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Watch(ctx, byName)
		},
		func() (watch.Interface, error) {
			return c.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Watch(ctx, byName)
		},
		func() (watch.Interface, error) {
			return c.Client.AppsV1().Deployments("sysctl-placement").Watch(ctx, byName)
		},
		func() (watch.Interface, error) {
			return c.Client.CoreV1().Services("sysctl-placement").Watch(ctx, byName)
		},
	} {
		w, err := start()
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		watches = append(watches, w)
	}
	events := make(chan deletion)
	for _, w := range watches {
		go func() {
			defer w.Stop()
			for e := range w.ResultChan() {
				if e.Type != watch.Deleted {
					continue
				}
				kinds, _, err := scheme.Scheme.ObjectKinds(e.Object)
				obj, ok := e.Object.(metav1.Object)
				if err != nil || len(kinds) == 0 || !ok {
					continue
				}
				rv, _ := strconv.ParseInt(obj.GetResourceVersion(), 10, 64)
				select {
				case events <- deletion{kinds[0].Kind, rv}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(d.done)
		for {
			select {
			case del := <-events:
				d.deleted = append(d.deleted, del)
			case <-ctx.Done():
				return
			}
		}
	}()
	return d
}

// stop ends the watch and returns the kinds deleted, in the order of their deletes.
func (d *deletionWatch) stop() []string {
	d.cancel()
	<-d.done
	slices.SortFunc(d.deleted, func(a, b deletion) int { return cmp.Compare(a.rv, b.rv) })
	var kinds []string
	for _, del := range d.deleted {
		kinds = append(kinds, del.kind)
	}
	return kinds
}
