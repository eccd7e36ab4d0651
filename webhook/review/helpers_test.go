package review

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// probe is a webhook that answers with everything it was given: the review's fields
// as kubewebhook's model holds them and the Object ObjectFrom decodes. The mutating
// probe writes them into its patch; the validating one denies a pod that asks for
// sysctls with them as the message, and admits anything else. Like the real
// webhooks it admits deletes and objects that hold no pod, and fails on an object
// it cannot decode.
type probe struct{ kind model.WebhookKind }

var _ kwhwebhook.Webhook = probe{}

func (p probe) ID() string              { return "probe" }
func (p probe) Kind() model.WebhookKind { return p.kind }

func (p probe) Review(ctx context.Context, ar model.AdmissionReview) (model.AdmissionResponse, error) {
	admit := func() model.AdmissionResponse {
		if p.kind == model.WebhookKindMutating {
			return &model.MutatingAdmissionResponse{}
		}
		return &model.ValidatingAdmissionResponse{Allowed: true}
	}
	if ar.Operation != model.OperationCreate && ar.Operation != model.OperationUpdate {
		return admit(), nil
	}
	gvk := metav1.GroupVersionKind{}
	if ar.RequestGVK != nil {
		gvk = *ar.RequestGVK
	}
	obj, err := ObjectFrom(ctx, ar, gvk)
	var unhandled UnhandledKindError
	if errors.As(err, &unhandled) {
		return admit(), nil
	}
	if err != nil {
		return nil, err
	}
	// Beyond scheduling.MaxSysctls the single decode keeps only the length of the
	// list (see sysctlList), which is all Plan reads of it: so does the probe.
	sysctls := 0
	if sc := obj.Pod.Spec.SecurityContext; sc != nil {
		sysctls = len(sc.Sysctls)
		if sysctls > scheduling.MaxSysctls {
			pod := *obj.Pod
			pod.Spec.SecurityContext = &corev1.PodSecurityContext{}
			obj.Pod = &pod
		}
	}
	seen, err := json.Marshal(struct {
		ID, Name, Namespace string
		Operation           model.AdmissionReviewOp
		Version             model.AdmissionReviewVersion
		RequestGVK          *metav1.GroupVersionKind
		RequestGVR          *metav1.GroupVersionResource
		UserInfo            authenticationv1.UserInfo
		OldObjectRaw        []byte
		DryRun              bool
		Object              Object
		Sysctls             int
	}{ar.ID, ar.Name, ar.Namespace, ar.Operation, ar.Version, ar.RequestGVK, ar.RequestGVR, ar.UserInfo, ar.OldObjectRaw, ar.DryRun, obj, sysctls})
	if err != nil {
		return nil, err
	}
	if p.kind == model.WebhookKindMutating {
		patch, err := json.Marshal([]map[string]string{{"op": "add", "path": obj.Paths.Metadata + "/annotations/seen", "value": string(seen)}})
		if err != nil {
			return nil, err
		}
		return &model.MutatingAdmissionResponse{JSONPatchPatch: patch, Warnings: []string{obj.Kind + " " + obj.Name}}, nil
	}
	if sysctls > 0 {
		return &model.ValidatingAdmissionResponse{Allowed: false, Message: string(seen)}, nil
	}
	return &model.ValidatingAdmissionResponse{Allowed: true, Warnings: []string{obj.Kind + " " + obj.Name}}, nil
}

// probeHandlers are the mutating and the validating probe behind NewHandler.
func probeHandlers(tb testing.TB) [2]http.Handler {
	tb.Helper()
	var hs [2]http.Handler
	for i, kind := range []model.WebhookKind{model.WebhookKindMutating, model.WebhookKindValidating} {
		h, err := NewHandler(HandlerConfig{Webhook: probe{kind}})
		if err != nil {
			tb.Fatal(err)
		}
		hs[i] = h
	}
	return hs
}
