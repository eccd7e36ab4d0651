package namespaces

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

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
		out, err := trimNamespace(in)
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
