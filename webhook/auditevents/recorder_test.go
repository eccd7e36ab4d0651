package auditevents

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/slok/kubewebhook/v2/pkg/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"

	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
)

// fakeClock is a settable clock for the recorder's interval.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// deniedPodJSON is a pod of ReplicaSet owner that no pool of the example config can run.
func deniedPodJSON(owner string) string {
	return fmt.Sprintf(`{
	  "apiVersion": "v1", "kind": "Pod",
	  "metadata": {"generateName": "%[1]s-", "ownerReferences": [
	    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "%[1]s", "uid": "uid-%[1]s", "controller": true}]},
	  "spec": {
	    "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}, {"name": "net.core.somaxconn", "value": "1"}]},
	    "containers": [{"name": "c", "image": "i"}]
	  }
	}`, owner)
}

func denialReview(owner string, dryRun bool) model.AdmissionReview {
	return model.AdmissionReview{
		ID: "1", Namespace: "team", Operation: model.OperationCreate, DryRun: dryRun,
		RequestGVK:   &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		NewObjectRaw: []byte(deniedPodJSON(owner)),
	}
}

// validatorWith builds the validating webhook on the example config, telling r.
func validatorWith(t *testing.T, r *Recorder) *webhook.Validator {
	t.Helper()
	compiled, err := config.Compile(deploy.ExampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	v, err := webhook.NewValidator(webhook.Config{
		Config:     config.NewStore(compiled),
		Namespaces: namespaces.Static{"team": {Name: "team", Annotations: map[string]string{scheduling.AnnotationEnabled: "true"}}},
		Workloads:  r,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func runRecorder(t *testing.T, r *Recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestRecorder(t *testing.T) {
	t.Run("admission returns while the Events API blocks forever", func(t *testing.T) {
		sink := &blockingSink{release: make(chan struct{})}
		m := NewMetrics(prometheus.NewRegistry())
		// A budget that never runs out: this is about the queue, not the namespace's share.
		r, err := NewRecorder(RecorderConfig{Sink: sink, Identity: "replica-a", QueueSize: 4, WriteTimeout: time.Hour, Metrics: m,
			NamespaceBudget: Budget{PerSecond: 1, Burst: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		runRecorder(t, r)
		v := validatorWith(t, r)

		const owners = 50
		admitted := make(chan error, 1)
		go func() {
			for i := range owners {
				resp, err := v.Review(context.Background(), denialReview(fmt.Sprintf("web-%d", i), false))
				if err != nil {
					admitted <- err
					return
				}
				if resp.(*model.ValidatingAdmissionResponse).Allowed {
					admitted <- fmt.Errorf("pod of web-%d was admitted, want denied", i)
					return
				}
			}
			admitted <- nil
		}()
		select {
		case err := <-admitted:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the validating webhook did not return while the Events API blocked")
		}
		// One Event is stuck in the sink, QueueSize wait, the rest were dropped and counted.
		eventually(t, "the writer is stuck in the sink", func() bool { return sink.callCount() == 1 })
		dropped := testutil.ToFloat64(m.dropped.WithLabelValues(DropQueueFull))
		if dropped < owners-1-4 {
			t.Fatalf("dropped{queue_full} = %v, want at least %d", dropped, owners-1-4)
		}
		close(sink.release)
		eventually(t, "the queued Events are written once the API answers", func() bool {
			return testutil.ToFloat64(m.recorded.WithLabelValues(ReasonSysctlUnplaceable))+dropped == owners
		})
	})

	t.Run("a retrying ReplicaSet is reported once per interval", func(t *testing.T) {
		client := fake.NewClientset()
		clock := &fakeClock{now: time.Date(2026, 11, 27, 10, 0, 30, 0, time.UTC)}
		m := NewMetrics(prometheus.NewRegistry())
		r, err := NewRecorder(RecorderConfig{Sink: &events.EventSinkImpl{Interface: client.EventsV1()}, Identity: "replica-a", Metrics: m, now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		runRecorder(t, r)
		v := validatorWith(t, r)
		deny := func(n int) {
			for range n {
				if _, err := v.Review(context.Background(), denialReview("web-7d9f", false)); err != nil {
					t.Fatal(err)
				}
			}
		}

		deny(30)
		eventually(t, "the first denial is recorded", func() bool { return len(listEvents(t, client)) == 1 })
		clock.Step(9 * time.Minute)
		deny(30)
		clock.Step(2 * time.Minute) // past the 10-minute interval
		deny(1)
		eventually(t, "the denial after the interval is recorded", func() bool { return len(listEvents(t, client)) == 2 })
		if got := testutil.ToFloat64(m.skipped.WithLabelValues(SkipRepeated)); got != 29+30 {
			t.Errorf("skipped{repeated} = %v, want 59", got)
		}
		for _, e := range listEvents(t, client) {
			want := corev1.ObjectReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", UID: "uid-web-7d9f", Namespace: "team"}
			if e.Regarding != want || e.Reason != ReasonSysctlUnplaceable || e.Type != corev1.EventTypeWarning {
				t.Errorf("Event regards %+v with %s %s, want a SysctlUnplaceable Warning on %+v", e.Regarding, e.Type, e.Reason, want)
			}
			if !strings.Contains(e.Note, "kernel.msgmax") || len(e.Note) > MaxNoteLength {
				t.Errorf("note %q must give the denial's reasons within %d bytes", e.Note, MaxNoteLength)
			}
		}
	})

	t.Run("replicas denying the same workload in one interval record one Event", func(t *testing.T) {
		client := fake.NewClientset()
		clock := &fakeClock{now: time.Date(2026, 11, 27, 10, 0, 30, 0, time.UTC)}
		var metrics []*Metrics
		for _, id := range []string{"replica-a", "replica-b"} {
			m := NewMetrics(prometheus.NewRegistry())
			metrics = append(metrics, m)
			r, err := NewRecorder(RecorderConfig{Sink: &events.EventSinkImpl{Interface: client.EventsV1()}, Identity: id, Metrics: m, now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			runRecorder(t, r)
			r.PodDenied(webhook.DeniedPod{Namespace: "team", PodName: "web-",
				Owner:   metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: types.UID("uid-web")},
				Outcome: scheduling.OutcomeUnplaceable, Message: "no pool allows kernel.msgmax"})
		}
		eventually(t, "both replicas have written", func() bool {
			var n float64
			for _, m := range metrics {
				n += testutil.ToFloat64(m.recorded.WithLabelValues(ReasonSysctlUnplaceable)) + testutil.ToFloat64(m.skipped.WithLabelValues(SkipAlreadyRecorded))
			}
			return n == 2
		})
		if evs := listEvents(t, client); len(evs) != 1 {
			t.Fatalf("%d Events, want one shared by both replicas", len(evs))
		}
	})

	t.Run("a dry-run denial records nothing", func(t *testing.T) {
		client := fake.NewClientset()
		r, err := NewRecorder(RecorderConfig{Sink: &events.EventSinkImpl{Interface: client.EventsV1()}, Identity: "replica-a"})
		if err != nil {
			t.Fatal(err)
		}
		v := validatorWith(t, r)
		if _, err := v.Review(context.Background(), denialReview("web", true)); err != nil {
			t.Fatal(err)
		}
		// Nothing runs the queue: anything offered would still sit in it.
		if n := len(r.queue); n != 0 {
			t.Fatalf("a dry-run denial queued %d Events, want none", n)
		}
	})

	t.Run("a template changed on update is recorded on the workload", func(t *testing.T) {
		client := fake.NewClientset()
		r, err := NewRecorder(RecorderConfig{Sink: &events.EventSinkImpl{Interface: client.EventsV1()}, Identity: "replica-a"})
		if err != nil {
			t.Fatal(err)
		}
		runRecorder(t, r)
		r.TemplateChanged(webhook.ChangedTemplate{Namespace: "team", APIVersion: "apps/v1", Kind: "Deployment", Name: "shm-cache", UID: "uid-shm",
			Audit: scheduling.Audit{HostNamespaces: []scheduling.HostNamespaceChange{{Field: "hostIPC", Mode: scheduling.ClashStrip, Sysctls: []string{"kernel.shmmax"}}}}})
		eventually(t, "the Event is recorded", func() bool { return len(listEvents(t, client)) == 1 })
		e := listEvents(t, client)[0]
		if e.Regarding.Kind != "Deployment" || e.Regarding.UID != "uid-shm" || e.Reason != ReasonHostNamespaceStripped || !strings.HasPrefix(e.Note, "pod template: set hostIPC: false") {
			t.Fatalf("Event = %+v", e)
		}
	})

	t.Run("a tenant naming another tenant's workload UID does not silence its Event", func(t *testing.T) {
		client := fake.NewClientset()
		r, err := NewRecorder(RecorderConfig{Sink: &events.EventSinkImpl{Interface: client.EventsV1()}, Identity: "replica-a"})
		if err != nil {
			t.Fatal(err)
		}
		runRecorder(t, r)
		// The ownerReference is written by the pod's creator: tenant-a's pod claims
		// tenant-b's ReplicaSet, UID and all, just before tenant-b's own pod is denied.
		owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: types.UID("uid-of-tenant-b-web")}
		for _, ns := range []string{"tenant-a", "tenant-b"} {
			r.PodDenied(webhook.DeniedPod{Namespace: ns, PodName: "web-", Owner: owner,
				Outcome: scheduling.OutcomeUnplaceable, Message: "no pool allows kernel.msgmax"})
		}
		eventually(t, "both namespaces have their Event", func() bool { return len(listEvents(t, client)) == 2 })
	})

	t.Run("one namespace's flood of denials does not crowd out another's Event", func(t *testing.T) {
		m := NewMetrics(prometheus.NewRegistry())
		r, err := NewRecorder(RecorderConfig{Sink: &blockingSink{release: make(chan struct{})}, Identity: "replica-a", Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		// Nothing runs the queue: what is offered stays in it, as while the API is slow.
		deny := func(ns, owner string) {
			r.PodDenied(webhook.DeniedPod{Namespace: ns, PodName: owner + "-",
				Owner:   metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner, UID: types.UID("uid-" + owner)},
				Outcome: scheduling.OutcomeUnplaceable, Message: "no pool allows kernel.msgmax"})
		}
		for i := range 5000 {
			deny("tenant-a", fmt.Sprintf("flood-%d", i))
		}
		deny("tenant-b", "web")
		queued := map[string]int{}
		for len(r.queue) > 0 {
			queued[(<-r.queue).Namespace]++
		}
		if queued["tenant-b"] != 1 {
			t.Errorf("tenant-b's Event was not queued behind tenant-a's flood (queued by namespace: %v)", queued)
		}
		if burst := 20; queued["tenant-a"] > burst { // the default budget's
			t.Errorf("tenant-a queued %d Events, more than its budget's burst of %d", queued["tenant-a"], burst)
		}
		if got := testutil.ToFloat64(m.dropped.WithLabelValues("namespace_budget")); got < 5000-20 {
			t.Errorf("dropped{namespace_budget} = %v, want tenant-a's flood beyond its budget", got)
		}
	})
}
