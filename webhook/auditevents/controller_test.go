package auditevents

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/metadata"
	metadatafake "k8s.io/client-go/metadata/fake"
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
	scheduling.ApplyTo(&pod.Spec, changesOf(audit))
	if len(sysctls) > 0 {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{}
		for _, s := range sysctls {
			pod.Spec.SecurityContext.Sysctls = append(pod.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: s, Value: "1"})
		}
	}
	return pod
}

// changesOf is what the webhook changed to write audit: a pod it placed carries them.
func changesOf(a scheduling.Audit) scheduling.Changes {
	ch := scheduling.Changes{NodeSelector: a.NodeSelector, AffinityTerms: a.AffinityTerms, Tolerations: a.Tolerations, DroppedSysctls: a.DroppedSysctls}
	for _, c := range a.HostNamespaces {
		if h, ok := scheduling.HostNamespaceByField(c.Field); ok && c.Mode == scheduling.ClashStrip {
			off := false
			*h.Change(&ch) = &off
		}
	}
	return ch
}

// fakeAPI is one fake API server seen through both clients the Controller uses.
type fakeAPI struct {
	*fake.Clientset
	meta *metadatafake.FakeMetadataClient
}

func newFakeAPI(t *testing.T, pods ...*corev1.Pod) *fakeAPI {
	t.Helper()
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	f := &fakeAPI{Clientset: fake.NewClientset(), meta: metadatafake.NewSimpleMetadataClient(scheme)}
	for _, p := range pods {
		f.createPod(t, p)
	}
	return f
}

// createPod creates pod in both views of the fake API server.
func (f *fakeAPI) createPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, err := f.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: *pod.ObjectMeta.DeepCopy()}
	if _, err := f.meta.Resource(podsResource).Namespace(pod.Namespace).(metadatafake.MetadataClient).CreateFake(m, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// replica is one webhook replica's audit-events machinery on a shared client.
type replica struct {
	recorder   *Recorder
	controller *Controller
	metrics    *Metrics
}

func newReplica(t *testing.T, client *fakeAPI, identity string, opts ...func(*ControllerConfig)) replica {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	r, err := NewRecorder(RecorderConfig{Sink: &events.EventSinkImpl{Interface: client.EventsV1()}, Identity: identity, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ControllerConfig{Client: client, Metadata: client.meta, Recorder: r}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := NewController(cfg)
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
		client := newFakeAPI(t,
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
		// The counter moves once the API server has answered the create, just after
		// the Event became visible to the list above.
		eventually(t, "both SysctlPlaced Events are counted", func() bool {
			return testutil.ToFloat64(r.metrics.recorded.WithLabelValues(ReasonSysctlPlaced)) >= 2
		})
		if got := testutil.ToFloat64(r.metrics.recorded.WithLabelValues(ReasonSysctlPlaced)); got != 2 {
			t.Errorf("recorded{SysctlPlaced} = %v, want 2", got)
		}
	})

	t.Run("a new leader does not record again but catches up", func(t *testing.T) {
		now := time.Now()
		client := newFakeAPI(t, placedPod(t, "postgres-0", ipcAudit, now), placedPod(t, "postgres-1", ipcAudit, now))
		first := newReplica(t, client, "replica-a")
		stopFirst := first.start(t)
		eventually(t, "the first leader records both pods", func() bool { return len(listEvents(t, client)) == 2 })
		stopFirst()

		// While nobody leads, a pod is created; the old leader never saw it.
		client.createPod(t, placedPod(t, "postgres-2", ipcAudit, now))
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
		client := newFakeAPI(t, placedPod(t, "old", ipcAudit, time.Now().Add(-2*time.Hour)))
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
		client := newFakeAPI(t)
		for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
			pods = append(pods, placedPod(t, name, ipcAudit, now))
		}
		a, b := newReplica(t, client, "replica-a"), newReplica(t, client, "replica-b")
		a.start(t)
		b.start(t)
		for _, p := range pods {
			client.createPod(t, p)
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
		client := newFakeAPI(t, placedPod(t, "postgres-0", ipcAudit, time.Now()))
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
		client.createPod(t, placedPod(t, "postgres-1", ipcAudit, time.Now()))
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

func TestForgedPlacements(t *testing.T) {
	t.Run("the controller records nothing for forged placements", func(t *testing.T) {
		t.Run("a pod that does not carry what its annotation claims gets no Event", func(t *testing.T) {
			now := time.Now()
			// Its creator set our label and a well-formed annotation; the webhook never saw
			// it, so it has neither the pool's nodeSelector nor its toleration.
			forged := placedPod(t, "forged", ipcAudit, now)
			forged.Spec.NodeSelector, forged.Spec.Tolerations = nil, nil
			nothing := placedPod(t, "claims-nothing", scheduling.Audit{Pools: []string{"ipc"}, Reason: scheduling.ReasonPlaced}, now)
			client := newFakeAPI(t, forged, nothing, placedPod(t, "real", ipcAudit, now, "kernel.shmmax"))
			r := newReplica(t, client, "replica-a")
			r.start(t)
			eventually(t, "both forgeries are skipped", func() bool {
				return testutil.ToFloat64(r.metrics.skipped.WithLabelValues(SkipNotAdmitted)) == 2
			})
			eventually(t, "the real placement is recorded", func() bool { return len(listEvents(t, client)) == 1 })
			if got := eventKeys(listEvents(t, client)); strings.Join(got, " ") != "real/SysctlPlaced" {
				t.Fatalf("Events = %v, want only the real placement's", got)
			}
		})

		t.Run("an annotation larger than the webhook writes is dropped and never cached", func(t *testing.T) {
			now := time.Now()
			huge := placedPod(t, "huge", ipcAudit, now)
			// Valid audit JSON: unknown fields are ignored, so the padding still parses.
			huge.Annotations[scheduling.AnnotationPlacement] = `{"pools":["ipc"],"nodeSelector":{"sysctl-placement.io/pool":"ipc"},"padding":"` +
				strings.Repeat("A", 250<<10) + `"}`
			client := newFakeAPI(t, huge)
			r := newReplica(t, client, "replica-a")
			r.start(t)
			eventually(t, "the oversized pod is dropped", func() bool {
				return testutil.ToFloat64(r.metrics.dropped.WithLabelValues(DropOversized)) == 1
			})
			if evs := listEvents(t, client); len(evs) != 0 {
				t.Fatalf("Events = %v, want none", eventKeys(evs))
			}
			for _, a := range client.Actions() {
				if a.GetVerb() == "list" && a.GetResource().Resource == "pods" {
					t.Errorf("the oversized pod was read in full (%v); it should be ruled out by its metadata", a)
				}
			}
		})

		t.Run("placed pods are listed a page at a time and trimmed", func(t *testing.T) {
			m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "team",
				Labels:        map[string]string{scheduling.LabelPlaced: "true", "app": strings.Repeat("x", 60)},
				Annotations:   map[string]string{scheduling.AnnotationPlacement: strings.Repeat("A", MaxPlacementAnnotationBytes+1), "other": "x"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
			got := trimPodMetadata(m)
			if len(got.Labels) != 1 || len(got.Annotations) != 1 || got.Annotations[oversizedMarker] == "" || got.ManagedFields != nil {
				t.Errorf("trimmed metadata keeps %v, %v, %v; want our label and the oversized marker only", got.Labels, got.Annotations, got.ManagedFields)
			}
			client := newFakeAPI(t)
			for i := range 40 {
				p := placedPod(t, fmt.Sprintf("huge-%d", i), ipcAudit, time.Now())
				p.Annotations[scheduling.AnnotationPlacement] = strings.Repeat("A", MaxPlacementAnnotationBytes+1)
				client.createPod(t, p)
			}
			pages := &pagingMetadata{Interface: client.meta}
			r := newReplica(t, client, "replica-a", func(c *ControllerConfig) { c.Metadata = pages })
			r.start(t)
			eventually(t, "every pod is listed", func() bool {
				return testutil.ToFloat64(r.metrics.dropped.WithLabelValues(DropOversized)) == 40
			})
			pages.mu.Lock()
			defer pages.mu.Unlock()
			if len(pages.lists) != 3 {
				t.Errorf("%d list calls, want 3 pages of at most %d for 40 pods", len(pages.lists), listPageSize)
			}
			for _, o := range pages.lists {
				if o.Limit != listPageSize || o.ResourceVersion != "" || o.LabelSelector != PlacedPodSelector {
					t.Errorf("list options %+v, want pages of %d from a consistent list of placed pods", o, listPageSize)
				}
			}
		})
	})
}

// pagingMetadata answers pod lists a page at a time, as the API server does for a
// consistent list with a limit, and records each list's options.
type pagingMetadata struct {
	metadata.Interface
	mu    sync.Mutex
	lists []metav1.ListOptions
}

// IsWatchListSemanticsUnSupported: like the fake it wraps, it cannot stream lists.
func (p *pagingMetadata) IsWatchListSemanticsUnSupported() bool { return true }

func (p *pagingMetadata) Resource(gvr schema.GroupVersionResource) metadata.Getter {
	return pagingGetter{p.Interface.Resource(gvr), p}
}

type pagingGetter struct {
	metadata.Getter
	p *pagingMetadata
}

func (g pagingGetter) Namespace(ns string) metadata.ResourceInterface {
	return pagingResource{g.Getter.Namespace(ns), g.p}
}

type pagingResource struct {
	metadata.ResourceInterface
	p *pagingMetadata
}

func (r pagingResource) List(ctx context.Context, opts metav1.ListOptions) (*metav1.PartialObjectMetadataList, error) {
	r.p.mu.Lock()
	r.p.lists = append(r.p.lists, opts)
	r.p.mu.Unlock()
	all, err := r.ResourceInterface.List(ctx, metav1.ListOptions{LabelSelector: opts.LabelSelector})
	if err != nil || opts.Limit == 0 {
		return all, err
	}
	start, _ := strconv.Atoi(opts.Continue)
	end := min(start+int(opts.Limit), len(all.Items))
	page := &metav1.PartialObjectMetadataList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: all.Items[start:end]}
	if end < len(all.Items) {
		page.Continue = strconv.Itoa(end)
	}
	return page, nil
}

func TestControllerGivesEachNamespaceItsOwnBudget(t *testing.T) {
	now := time.Now()
	client := newFakeAPI(t)
	for i := range 200 {
		p := placedPod(t, fmt.Sprintf("flood-%d", i), ipcAudit, now)
		p.Namespace = "tenant-a"
		client.createPod(t, p)
	}
	b := placedPod(t, "web-0", ipcAudit, now)
	b.Namespace = "tenant-b"
	client.createPod(t, b)
	// Five at once, then one every 400 s: tenant-a's sixth pod would wait past
	// MaxPodAge for its turn.
	r := newReplica(t, client, "replica-a", func(c *ControllerConfig) {
		c.NamespaceBudget = Budget{PerSecond: 1.0 / 400, Burst: 5}
		c.MaxPodAge = 30 * time.Minute
	})
	r.start(t)
	eventually(t, "tenant-b's pod is recorded", func() bool {
		for _, e := range listEvents(t, client) {
			if e.Namespace == "tenant-b" {
				return true
			}
		}
		return false
	})
	eventually(t, "tenant-a's flood beyond its budget is dropped", func() bool {
		return testutil.ToFloat64(r.metrics.dropped.WithLabelValues(DropNamespaceBudget)) == 200-5-4
	})
	if n := len(listEvents(t, client)); n > 5+1 {
		t.Errorf("%d Events recorded, want at most tenant-a's five and tenant-b's one now", n)
	}
}
