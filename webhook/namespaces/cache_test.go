package namespaces

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	logtest "github.com/sirupsen/logrus/hooks/test"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

func TestCache(t *testing.T) {
	t.Run("the trimmed namespace keeps what Plan reads", func(t *testing.T) {
		in := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Name:   "team-a",
			Labels: map[string]string{"team": "a"},
			Annotations: map[string]string{
				scheduling.AnnotationEnabled:                       "true",
				scheduling.AnnotationTolerationsWhitelist:          `[{"key":"dedicated","operator":"Exists"}]`,
				"scheduler.alpha.kubernetes.io/defaultTolerations": `[]`,
				"kubectl.kubernetes.io/last-applied-configuration": `{"big":"blob"}`,
			},
		}}
		out, err := (&Cache{}).trimNamespace(in)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*metav1.PartialObjectMetadata).Annotations
		want := map[string]string{
			scheduling.AnnotationEnabled:              "true",
			scheduling.AnnotationTolerationsWhitelist: `[{"key":"dedicated","operator":"Exists"}]`,
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("annotations kept: %v, want %v", got, want)
		}
	})

	t.Run("an oversized annotation is kept empty, counted and logged", func(t *testing.T) {
		big := strings.Repeat("x", 250<<10)
		in := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Name: "team-a",
			Annotations: map[string]string{
				scheduling.AnnotationEnabled:              "true",
				scheduling.AnnotationPools:                big,
				scheduling.AnnotationTolerationsWhitelist: big,
				scheduling.AnnotationPrefix + "made-up-a": strings.Repeat("y", MaxAnnotationBytes),
				scheduling.AnnotationPrefix + "made-up-b": strings.Repeat("y", MaxAnnotationBytes),
				scheduling.AnnotationPrefix + "made-up-c": strings.Repeat("y", MaxAnnotationBytes),
				scheduling.AnnotationPrefix + "made-up-d": strings.Repeat("y", MaxAnnotationBytes),
			},
		}}
		reg := prometheus.NewRegistry()
		logger, hook := logtest.NewNullLogger()
		c := &Cache{cfg: CacheConfig{Metrics: NewMetrics(reg), Logger: logger}}
		out, err := c.trimNamespace(in)
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*metav1.PartialObjectMetadata).Annotations
		total := 0
		for _, v := range got {
			total += len(v)
		}
		if total > MaxNamespaceAnnotationBytes {
			t.Errorf("the cache keeps %d bytes of the namespace's annotations, more than %d", total, MaxNamespaceAnnotationBytes)
		}
		// In key order: enabled and three made-up ones fit, the fourth goes over the
		// namespace's total, pools and the whitelist are each over the bound. Empty,
		// not missing, so each fails closed.
		for _, k := range []string{scheduling.AnnotationPools, scheduling.AnnotationTolerationsWhitelist, scheduling.AnnotationPrefix + "made-up-d"} {
			if v, ok := got[k]; !ok || v != "" {
				t.Errorf("annotation %s kept as %d bytes (present %v), want present and empty", k, len(v), ok)
			}
		}
		if got[scheduling.AnnotationEnabled] != "true" {
			t.Errorf("a small annotation was not kept: %v", got[scheduling.AnnotationEnabled])
		}
		if n := testutil.ToFloat64(c.cfg.Metrics.oversized); n != 3 {
			t.Errorf("sysctl_placement_namespace_annotations_oversized_total = %v, want 3", n)
		}
		if len(hook.Entries) != 3 || hook.LastEntry().Data["namespace"] != "team-a" {
			t.Errorf("log = %v, want one line per oversized annotation naming the namespace", hook.Entries)
		}
	})
}

// recordingWatcher keeps the last state it heard of each namespace.
type recordingWatcher struct {
	mu   sync.Mutex
	seen map[string]scheduling.Namespace
}

func (w *recordingWatcher) NamespaceChanged(ns scheduling.Namespace) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[ns.Name] = ns
}

func (w *recordingWatcher) NamespaceDeleted(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.seen, name)
}

func (w *recordingWatcher) enforce(name string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ns, ok := w.seen[name]
	return ns.Labels[scheduling.LabelPodSecurityEnforce], ok
}

func TestWatch(t *testing.T) {
	t.Run("a watcher hears of every namespace added, relabelled and deleted", func(t *testing.T) {
		ns := &metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: "shop",
				Labels: map[string]string{scheduling.LabelEnabled: "true", scheduling.LabelPodSecurityEnforce: "baseline"}},
		}
		scheme := metadatafake.NewTestScheme()
		if err := metav1.AddMetaToScheme(scheme); err != nil {
			t.Fatal(err)
		}
		client := metadatafake.NewSimpleMetadataClient(scheme, ns)
		c, err := NewCache(CacheConfig{Client: client})
		if err != nil {
			t.Fatal(err)
		}
		w := &recordingWatcher{seen: map[string]scheduling.Namespace{}}
		if err := c.Watch(w); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c.Start(ctx)
		until := func(what string, cond func() bool) {
			t.Helper()
			if err := wait.PollUntilContextCancel(ctx, 10*time.Millisecond, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
		until("the watcher hears of the namespace enforcing baseline", func() bool { v, _ := w.enforce("shop"); return v == "baseline" })

		relabelled := ns.DeepCopy()
		relabelled.Labels[scheduling.LabelPodSecurityEnforce] = "privileged"
		if _, err := client.Resource(namespacesResource).(metadatafake.MetadataClient).UpdateFake(relabelled, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		until("the watcher hears of the relabelling", func() bool { v, _ := w.enforce("shop"); return v == "privileged" })
		if got, _ := c.Namespace("shop"); got.Labels[scheduling.LabelPodSecurityEnforce] != "privileged" {
			t.Errorf("the cache kept labels %v", got.Labels)
		}

		if err := client.Resource(namespacesResource).Delete(ctx, "shop", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		until("the watcher hears of the deletion", func() bool { _, ok := w.enforce("shop"); return !ok })
	})
}
