package webhook

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/slok/kubewebhook/v2/pkg/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/deploy"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
)

// recordingObserver remembers what the webhooks told it.
type recordingObserver struct {
	mu        sync.Mutex
	denied    []DeniedPod
	templates []ChangedTemplate
}

func (o *recordingObserver) PodDenied(d DeniedPod) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.denied = append(o.denied, d)
}

func (o *recordingObserver) TemplateChanged(c ChangedTemplate) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.templates = append(o.templates, c)
}

// observedWebhooks builds both webhooks on the example config with obs as observer.
func observedWebhooks(t testing.TB, obs WorkloadObserver) (*Mutator, *Validator) {
	t.Helper()
	compiled, err := config.Compile(deploy.ExampleConfig)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	cfg := Config{
		Config:     config.NewStore(compiled),
		Namespaces: namespaces.Static{"team": {Name: "team", Annotations: map[string]string{scheduling.AnnotationEnabled: "true"}}},
		Workloads:  obs,
	}
	return newWebhooks(t, cfg)
}

func podReview(object string, dryRun bool) model.AdmissionReview {
	return model.AdmissionReview{
		ID: "1", Namespace: "team", Operation: model.OperationCreate, DryRun: dryRun,
		RequestGVK:   &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		NewObjectRaw: []byte(object),
	}
}

func TestObserver(t *testing.T) {
	t.Run("a denied pod of a controller is reported once with its owner", func(t *testing.T) {
		obs := &recordingObserver{}
		_, v := observedWebhooks(t, obs)
		resp, err := v.Review(context.Background(), podReview(replicaSetPod, false))
		if err != nil {
			t.Fatal(err)
		}
		if resp.(*model.ValidatingAdmissionResponse).Allowed {
			t.Fatal("the pod must be denied")
		}
		if len(obs.denied) != 1 {
			t.Fatalf("observer told %d times, want once", len(obs.denied))
		}
		got := obs.denied[0]
		if got.Owner.Kind != "ReplicaSet" || got.Owner.Name != "web-7d9f" || got.Owner.UID == "" || got.Namespace != "team" {
			t.Errorf("denied pod = %+v, want the ReplicaSet web-7d9f in team", got)
		}
		if got.Outcome != scheduling.OutcomeUnplaceable || !strings.Contains(got.Message, "kernel.msgmax") || got.PodName != "web-7d9f-" {
			t.Errorf("denied pod = %+v, want outcome Unplaceable, the denial message and the generateName", got)
		}
	})

	t.Run("nobody is told about dry runs or pods without a controller", func(t *testing.T) {
		obs := &recordingObserver{}
		m, v := observedWebhooks(t, obs)
		orphan := strings.Replace(replicaSetPod, `"controller": true`, `"controller": false`, 1)
		for name, ar := range map[string]model.AdmissionReview{
			"dry-run denial":            podReview(replicaSetPod, true),
			"denied pod with no owner":  podReview(orphan, false),
			"placed pod (not a denial)": podReview(postgresPod, false),
		} {
			if _, err := m.Review(context.Background(), ar); err != nil {
				t.Fatalf("%s: mutate: %v", name, err)
			}
			if _, err := v.Review(context.Background(), ar); err != nil {
				t.Fatalf("%s: validate: %v", name, err)
			}
		}
		if len(obs.denied) != 0 || len(obs.templates) != 0 {
			t.Fatalf("observer was told %+v %+v, want nothing", obs.denied, obs.templates)
		}
	})

	t.Run("a workload template changed on update is reported with its UID", func(t *testing.T) {
		obs := &recordingObserver{}
		m, _ := observedWebhooks(t, obs)
		stored := strings.Replace(hostIPCDeployment, `"metadata": {"name": "shm-cache"}`,
			`"metadata": {"name": "shm-cache", "uid": "9e0b7d3a-0000-4000-8000-000000000002"}`, 1)
		review := func(op model.AdmissionReviewOp, dryRun bool) model.AdmissionReview {
			return model.AdmissionReview{
				ID: "1", Namespace: "team", Operation: op, DryRun: dryRun,
				RequestGVK:   &metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
				NewObjectRaw: []byte(stored), OldObjectRaw: []byte(stored),
			}
		}
		for _, ar := range []model.AdmissionReview{
			review(model.OperationCreate, false), // no UID at CREATE in real life: not reported
			review(model.OperationUpdate, true),  // dry run
			review(model.OperationUpdate, false), // the one to report
		} {
			resp, err := m.Review(context.Background(), ar)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.(*model.MutatingAdmissionResponse).JSONPatchPatch) == 0 {
				t.Fatalf("%s dryRun=%v: hostIPC was not stripped", ar.Operation, ar.DryRun)
			}
		}
		if len(obs.templates) != 1 {
			t.Fatalf("observer told %d times, want once (the UPDATE that is not a dry run)", len(obs.templates))
		}
		got := obs.templates[0]
		if got.Kind != "Deployment" || got.APIVersion != "apps/v1" || got.Name != "shm-cache" || got.UID == "" || got.Namespace != "team" {
			t.Errorf("changed template = %+v, want the Deployment shm-cache with its UID", got)
		}
		if len(got.Audit.HostNamespaces) != 1 || got.Audit.HostNamespaces[0].Field != "hostIPC" {
			t.Errorf("audit = %+v, want the hostIPC change", got.Audit)
		}
	})
}
