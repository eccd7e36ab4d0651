package auditevents

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// placedPod is a pod as the mutating webhook leaves it: labelled, with the audit JSON.
func placedPod(t *testing.T, name string, audit scheduling.Audit, created time.Time, sysctls ...string) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(audit)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "team", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(created),
			Labels:            map[string]string{scheduling.LabelPlaced: "true", "app": name},
			Annotations:       map[string]string{scheduling.AnnotationPlacement: string(raw), "other": "x"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}}},
	}
	if len(sysctls) > 0 {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{}
		for _, s := range sysctls {
			pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: s, Value: "1"})
		}
	}
	return pod
}

// replica is one webhook replica's audit-events machinery on a shared client.
type replica struct {
	recorder   *Recorder
	controller *Controller
	metrics    *Metrics
}

func newReplica(t *testing.T, client kubernetes.Interface, identity string) replica {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	r, err := NewRecorder(RecorderConfig{Sink: &events.EventSinkImpl{Interface: client.EventsV1()}, Identity: identity, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewController(ControllerConfig{Client: client, Recorder: r})
	if err != nil {
		t.Fatal(err)
	}
	return replica{recorder: r, controller: c, metrics: m}
}

// start runs the controller until the returned stop is called; stop waits for it.
func (r replica) start(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.controller.Run(ctx); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func listEvents(t *testing.T, client kubernetes.Interface) []eventsv1.Event {
	t.Helper()
	list, err := client.EventsV1().Events(metav1.NamespaceAll).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting until %s", what)
	}
}

// eventKeys returns "pod/reason" for every Event, sorted, duplicates kept.
func eventKeys(evs []eventsv1.Event) []string {
	keys := make([]string, 0, len(evs))
	for _, e := range evs {
		keys = append(keys, e.Regarding.Name+"/"+e.Reason)
	}
	sort.Strings(keys)
	return keys
}

func TestController(t *testing.T) {
	t.Run("each placed pod gets one Event per reason", func(t *testing.T) {
		now := time.Now()
		stripped := ipcAudit
		stripped.HostNamespaces = []scheduling.HostNamespaceChange{{Field: "hostIPC", Mode: scheduling.ClashStrip, Sysctls: []string{"kernel.shmmax"}}}
		unlabelled := placedPod(t, "not-ours", ipcAudit, now)
		delete(unlabelled.Labels, scheduling.LabelPlaced)
		broken := placedPod(t, "broken", ipcAudit, now)
		broken.Annotations[scheduling.AnnotationPlacement] = "{not json"
		client := fake.NewClientset(
			placedPod(t, "postgres-0", ipcAudit, now, "kernel.shmmax", "kernel.sem"),
			placedPod(t, "shm-cache", stripped, now, "kernel.shmmax"),
			unlabelled, broken,
		)
		r := newReplica(t, client, "replica-a")
		r.start(t)

		eventually(t, "three Events are recorded", func() bool { return len(listEvents(t, client)) >= 3 })
		eventually(t, "the broken pod is skipped", func() bool {
			return testutil.ToFloat64(r.metrics.skipped.WithLabelValues(SkipInvalidAudit)) == 1
		})
		evs := listEvents(t, client)
		want := []string{"postgres-0/SysctlPlaced", "shm-cache/HostNamespaceStripped", "shm-cache/SysctlPlaced"}
		if got := eventKeys(evs); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("Events = %v, want exactly %v", got, want)
		}
		for _, e := range evs {
			if e.Regarding.Kind != "Pod" || e.Regarding.Namespace != "team" || e.Regarding.UID != types.UID("uid-"+e.Regarding.Name) || e.Namespace != "team" {
				t.Errorf("Event %s regards %+v, want the pod by namespace, name and UID", e.Name, e.Regarding)
			}
			if e.ReportingController != ReportingController || e.ReportingInstance == "" || e.Action == "" || e.EventTime.IsZero() || len(e.Note) > MaxNoteLength {
				t.Errorf("Event %s lacks a field the API server requires: %+v", e.Name, e)
			}
			if e.Regarding.Name == "postgres-0" && !strings.Contains(e.Note, "its kubelets allow sysctls kernel.shmmax, kernel.sem") {
				t.Errorf("SysctlPlaced note %q does not say why", e.Note)
			}
		}
		if got := testutil.ToFloat64(r.metrics.recorded.WithLabelValues(ReasonSysctlPlaced)); got != 2 {
			t.Errorf("recorded{SysctlPlaced} = %v, want 2", got)
		}
	})

	t.Run("a new leader does not record again but catches up", func(t *testing.T) {
		now := time.Now()
		client := fake.NewClientset(placedPod(t, "postgres-0", ipcAudit, now), placedPod(t, "postgres-1", ipcAudit, now))
		first := newReplica(t, client, "replica-a")
		stopFirst := first.start(t)
		eventually(t, "the first leader records both pods", func() bool { return len(listEvents(t, client)) == 2 })
		stopFirst()

		// While nobody leads, a pod is created; the old leader never saw it.
		if _, err := client.CoreV1().Pods("team").Create(context.Background(), placedPod(t, "postgres-2", ipcAudit, now), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		second := newReplica(t, client, "replica-b")
		second.start(t)
		eventually(t, "the new leader has looked at the two old pods", func() bool {
			return testutil.ToFloat64(second.metrics.skipped.WithLabelValues(SkipAlreadyRecorded)) == 2
		})
		eventually(t, "the new leader records the new pod", func() bool { return len(listEvents(t, client)) == 3 })
		want := []string{"postgres-0/SysctlPlaced", "postgres-1/SysctlPlaced", "postgres-2/SysctlPlaced"}
		if got := eventKeys(listEvents(t, client)); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("Events = %v, want exactly %v", got, want)
		}
	})

	t.Run("pods older than the Event TTL window are not recorded again", func(t *testing.T) {
		// The pod's Event was recorded two hours ago and has expired since (event TTL).
		client := fake.NewClientset(placedPod(t, "old", ipcAudit, time.Now().Add(-2*time.Hour)))
		r := newReplica(t, client, "replica-a")
		r.start(t)
		eventually(t, "the old pod is skipped", func() bool {
			return testutil.ToFloat64(r.metrics.skipped.WithLabelValues(SkipPodTooOld)) == 1
		})
		if evs := listEvents(t, client); len(evs) != 0 {
			t.Fatalf("Events = %v, want none for a pod older than MaxPodAge", eventKeys(evs))
		}
	})

	t.Run("two replicas that both think they lead still record each Event once", func(t *testing.T) {
		now := time.Now()
		var pods []*corev1.Pod
		client := fake.NewClientset()
		for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
			pods = append(pods, placedPod(t, name, ipcAudit, now))
		}
		a, b := newReplica(t, client, "replica-a"), newReplica(t, client, "replica-b")
		a.start(t)
		b.start(t)
		for _, p := range pods {
			if _, err := client.CoreV1().Pods("team").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		total := func(cause string) float64 {
			return testutil.ToFloat64(a.metrics.recorded.WithLabelValues(ReasonSysctlPlaced)) + testutil.ToFloat64(b.metrics.recorded.WithLabelValues(ReasonSysctlPlaced)) +
				testutil.ToFloat64(a.metrics.skipped.WithLabelValues(cause)) + testutil.ToFloat64(b.metrics.skipped.WithLabelValues(cause))
		}
		eventually(t, "both replicas have handled every pod", func() bool { return total(SkipAlreadyRecorded) == 12 })
		if got := eventKeys(listEvents(t, client)); len(got) != 6 {
			t.Fatalf("Events = %v, want one per pod", got)
		}
	})

	t.Run("leadership moves to the other replica without recording again", func(t *testing.T) {
		client := fake.NewClientset(placedPod(t, "postgres-0", ipcAudit, time.Now()))
		timing := func(identity string, m *Metrics) LeaderElectionConfig {
			return LeaderElectionConfig{Client: client, Namespace: "sysctl-placement", Identity: identity, Metrics: m,
				LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond}
		}
		elect := func(r replica, identity string) (stop func()) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := RunWhileLeader(ctx, timing(identity, r.metrics), func(ctx context.Context) { _ = r.controller.Run(ctx) }); err != nil {
					t.Errorf("%s: %v", identity, err)
				}
			}()
			stop = func() { cancel(); <-done }
			t.Cleanup(func() { cancel(); <-done })
			return stop
		}
		leading := func(r replica) bool { return testutil.ToFloat64(r.metrics.leader) == 1 }

		a := newReplica(t, client, "replica-a")
		stopA := elect(a, "replica-a")
		eventually(t, "replica-a leads and records the pod", func() bool { return leading(a) && len(listEvents(t, client)) == 1 })
		b := newReplica(t, client, "replica-b")
		elect(b, "replica-b")

		stopA() // releases the lease
		eventually(t, "replica-b takes over and looks at the pod", func() bool {
			return leading(b) && testutil.ToFloat64(b.metrics.skipped.WithLabelValues(SkipAlreadyRecorded)) == 1
		})
		if _, err := client.CoreV1().Pods("team").Create(context.Background(), placedPod(t, "postgres-1", ipcAudit, time.Now()), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "replica-b records the next pod", func() bool { return len(listEvents(t, client)) == 2 })
		if got := eventKeys(listEvents(t, client)); strings.Join(got, " ") != "postgres-0/SysctlPlaced postgres-1/SysctlPlaced" {
			t.Fatalf("Events = %v, want one per pod", got)
		}
	})
}

// blockingSink is an Events API that never answers until released.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (s *blockingSink) Create(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	select {
	case <-s.release:
		return e, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *blockingSink) Update(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	return s.Create(ctx, e)
}

func (s *blockingSink) Patch(ctx context.Context, e *eventsv1.Event, _ []byte) (*eventsv1.Event, error) {
	return s.Create(ctx, e)
}

func (s *blockingSink) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}
