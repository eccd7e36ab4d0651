package e2e

// A tenant's hostile pods (issue 23): pods carrying as many made-up sysctls as a
// 3 MiB request holds, reviewed at once by serve and then created at once through the
// API server, must each get a small, quick answer while serve's memory stays bounded.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/integration/cluster"
	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// The bounds issue 23 states for this flood.
const (
	// apiServerRequestLimit is the API server's limit on a request body (3 MiB).
	apiServerRequestLimit = 3 << 20
	// hostileCreates is how many such pods are created at once.
	hostileCreates = 16
	// maxHostileAnswer is the most a client may get back for one of them.
	maxHostileAnswer = 64 << 10
	// maxHostileRSSGrowth is how far serve's peak RSS may rise above its RSS before.
	maxHostileRSSGrowth = 128 << 20
)

// hostilePod is a pod whose JSON is as close to limit bytes as made-up
// net.ipv4.conf.<name>.accept_local sysctls get it: the most sysctls one request
// can carry to the webhook (mutating admission runs before validation).
func hostilePod(t *testing.T, limit int) ([]byte, int) {
	t.Helper()
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "hostile-"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{},
			Containers:      []corev1.Container{{Name: "c", Image: "busybox"}},
		},
	}
	// Every entry has the same size, {"name":"net.ipv4.conf.e000000.accept_local","value":"1"},
	entry := func(i int) corev1.Sysctl {
		return corev1.Sysctl{Name: fmt.Sprintf("net.ipv4.conf.e%06d.accept_local", i), Value: "1"}
	}
	base, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	one, err := json.Marshal(entry(0))
	if err != nil {
		t.Fatal(err)
	}
	// The pod's JSON grows by one entry and a comma per sysctl, plus `"sysctls":[]`.
	n := (limit - len(base) - len(`"sysctls":[]`)) / (len(one) + 1)
	for i := range n {
		pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, entry(i))
	}
	body, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > limit {
		t.Fatalf("the hostile pod is %d bytes; want at most %d", len(body), limit)
	}
	return body, n
}

// hostileAnswer is what one create got back.
type hostileAnswer struct {
	code    int
	size    int
	elapsed time.Duration
	// message is the answer's body, or the error when there is none.
	message string
}

func TestSixteenPodsOfMadeUpSysctlsGetSmallDenials(t *testing.T) {
	c := cluster.StartForTest(t, cluster.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	createSystemNamespace(ctx, t, c)
	// The example configuration: static pools (none allows net.ipv4.conf.*) and
	// unplaceable: deny, as in the issue.
	w, err := c.StartWebhook(ctx, cluster.WebhookOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Terminate(30 * time.Second)
		if t.Failed() {
			t.Logf("webhook log:\n%s", process.Tail(w.LogFile, 30))
		}
	})
	if err := c.RegisterWebhook(ctx, w); err != nil {
		t.Fatal(err)
	}
	ns := optedInNamespace(ctx, t, c, "hostile", nil)
	body, n := hostilePod(t, apiServerRequestLimit-4<<10)
	t.Logf("figures: each pod carries %d sysctls in %d bytes of JSON", n, len(body))

	// JSON (what kubectl sends) and no client-side rate limit: all 16 at once.
	cfg := rest.CopyConfig(c.Config)
	cfg.ContentType, cfg.AcceptContentTypes = "application/json", "application/json"
	cfg.QPS, cfg.Burst = 1000, 1000
	cfg.WarningHandler = rest.NoWarnings{}
	client := kubernetes.NewForConfigOrDie(cfg)

	before, err := process.ReadSample(w.PID())
	if err != nil {
		t.Fatal(err)
	}
	// Reset VmHWM to the current RSS (Linux ≥ 4.0), so the peak is this flood's.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", w.PID()), []byte("5"), 0); err != nil {
		t.Logf("could not reset the peak RSS (%v); the peak may be from serve's start", err)
	}

	// First serve alone, as the issue measured it: the same pod in 16 reviews at once
	// (8 to /mutate, 8 to /validate) straight to its port. Then through the API server.
	direct := postHostileReviews(ctx, t, w, ns, body)
	answers := make([]hostileAnswer, hostileCreates)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			start := time.Now()
			var code int
			res := client.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").
				SetHeader("Content-Type", "application/json").Body(body).Do(ctx).StatusCode(&code)
			raw, err := res.Raw()
			answers[i] = hostileAnswer{code: code, size: len(raw), elapsed: time.Since(start), message: string(raw)}
			if err != nil && len(raw) == 0 {
				answers[i].message = err.Error()
			}
		})
	}
	wg.Wait()
	after, err := process.ReadSample(w.PID())
	if err != nil {
		t.Fatal(err)
	}

	// The shipped timeoutSeconds: a webhook call that exceeds it fails the create with
	// a 500 (failurePolicy Fail), so a 4xx for every create means every call was
	// answered within it.
	webhookTimeout := 3 * time.Second
	for i, a := range direct {
		if a.code != http.StatusOK || a.elapsed > webhookTimeout || a.size > maxHostileAnswer || !strings.Contains(a.message, "too many sysctls") {
			t.Errorf("review %d straight to serve: status %d, %d bytes after %s; want a denial naming the limit within %s and %d bytes: %.300s",
				i, a.code, a.size, a.elapsed, webhookTimeout, maxHostileAnswer, a.message)
		}
	}
	var sizes []int
	var times []time.Duration
	for i, a := range answers {
		sizes, times = append(sizes, a.size), append(times, a.elapsed)
		if a.code < 400 || a.code >= 500 {
			t.Errorf("create %d: status %d after %s; want a denial (4xx) within the webhook timeout of %s: %.300s", i, a.code, a.elapsed, webhookTimeout, a.message)
		}
		if a.size > maxHostileAnswer {
			t.Errorf("create %d: an answer of %d bytes; want at most %d", i, a.size, maxHostileAnswer)
		}
		if a.code == http.StatusForbidden && !strings.Contains(a.message, "too many sysctls") {
			t.Errorf("create %d: the denial does not name the limit: %.300s", i, a.message)
		}
	}
	growth := int64(after.HWM) - int64(before.RSS)
	t.Logf("figures: serve RSS before %d MiB, peak %d MiB (growth %d MiB), after %d MiB",
		before.RSS>>20, after.HWM>>20, growth>>20, after.RSS>>20)
	t.Logf("figures: answers %d..%d bytes, create times %s..%s, first answer: %d %.200s",
		slices.Min(sizes), slices.Max(sizes), slices.Min(times).Round(time.Millisecond), slices.Max(times).Round(time.Millisecond),
		answers[0].code, answers[0].message)
	sizes, times = sizes[:0], times[:0]
	for _, a := range direct {
		sizes, times = append(sizes, a.size), append(times, a.elapsed)
	}
	t.Logf("figures: straight to serve: answers %d..%d bytes, review times %s..%s",
		slices.Min(sizes), slices.Max(sizes), slices.Min(times).Round(time.Millisecond), slices.Max(times).Round(time.Millisecond))
	if growth > maxHostileRSSGrowth {
		t.Errorf("serve's peak RSS grew by %d MiB; want less than %d MiB", growth>>20, maxHostileRSSGrowth>>20)
	}
	select {
	case <-w.Exited():
		t.Fatalf("serve exited under the flood: %v", w.ExitErr())
	default:
	}
}

// postHostileReviews sends pod (JSON) in hostileCreates AdmissionReviews at once
// straight to serve, half to /mutate and half to /validate, as the API server would.
func postHostileReviews(ctx context.Context, t *testing.T, w *cluster.Webhook, ns string, pod []byte) []hostileAnswer {
	t.Helper()
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "hostile",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: pod},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	client := w.HTTPSClient()
	answers := make([]hostileAnswer, hostileCreates)
	var wg sync.WaitGroup
	for i := range answers {
		path := "/mutate"
		if i%2 == 1 {
			path = "/validate"
		}
		wg.Go(func() {
			start := time.Now()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL+path, bytes.NewReader(body))
			if err != nil {
				answers[i].message = err.Error()
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				answers[i] = hostileAnswer{elapsed: time.Since(start), message: err.Error()}
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			answers[i] = hostileAnswer{code: resp.StatusCode, size: len(data), elapsed: time.Since(start), message: string(data)}
			if err != nil {
				answers[i].message = err.Error()
			}
		})
	}
	wg.Wait()
	return answers
}
