package review

import (
	"context"
	"errors"
	"fmt"

	"github.com/slok/kubewebhook/v2/pkg/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	sigsjson "sigs.k8s.io/json"
)

// Object is the pod, or the pod template of a workload, that an admission request
// carries, with where its parts sit in the JSON document.
type Object struct {
	Kind string
	// Name is metadata.name, or generateName when there is none (for log lines).
	Name string
	// APIVersion, MetadataName and UID identify a workload (for its Events).
	APIVersion   string
	MetadataName string
	UID          types.UID
	// Template is true for a workload's pod template, false for a Pod.
	Template bool
	Paths    Paths
	// Pod holds only the fields podfields.go keeps: what Plan, the patch and the
	// Events read.
	Pod *corev1.Pod
	// NoMetadata: the document has no metadata object at all (the API server always
	// sends one; a hand-written review may not), so patches must create it.
	NoMetadata bool
}

// Paths says where a pod spec and its metadata sit inside the admitted object:
// "/spec" and "/metadata" for a Pod, "/spec/template/spec" for a Deployment, and so on.
type Paths struct {
	Spec     string
	Metadata string
}

var (
	podObjectPaths      = Paths{Spec: "/spec", Metadata: "/metadata"}
	templateObjectPaths = Paths{Spec: "/spec/template/spec", Metadata: "/spec/template/metadata"}
	cronJobObjectPaths  = Paths{Spec: "/spec/jobTemplate/spec/template/spec", Metadata: "/spec/jobTemplate/spec/template/metadata"}
	podTemplatePaths    = Paths{Spec: "/template/spec", Metadata: "/template/metadata"}
)

// objectEnvelope decodes every kind we handle in one pass: a Pod's spec fills the
// embedded placementSpec; a workload's spec fills Template or JobTemplate; a
// PodTemplate fills the top-level Template. Only what placement reads is decoded
// (see podfields.go).
type objectEnvelope struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        *placementMeta `json:"metadata"`
	Spec            struct {
		placementSpec `json:",inline"`
		Template      *placementTemplate `json:"template"`
		JobTemplate   *struct {
			Spec struct {
				Template *placementTemplate `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
	Template *placementTemplate `json:"template"`
}

// UnhandledKindError marks objects that are not pods or pod-owning workloads; they are
// admitted unchanged.
type UnhandledKindError struct{ Kind string }

func (e UnhandledKindError) Error() string {
	return fmt.Sprintf("sysctl-placement does not handle objects of kind %q; admitted unchanged (check the webhook configuration's rules)", e.Kind)
}

// DecodeObject decodes raw (the request's object) of the given kind (from the
// request; the object's own apiVersion/kind wins when present). The handler's single
// decode (decodeReview) fills objectEnvelope itself and calls admitted directly; this
// is for reviews that kubewebhook decoded.
func DecodeObject(raw []byte, kind metav1.GroupVersionKind) (Object, error) {
	if len(raw) == 0 {
		return Object{}, ErrNoObject
	}
	var env objectEnvelope
	// Case-sensitive, as the API server decodes: encoding/json would read "Metadata"
	// or "metadaTa" as metadata, and a patch to /metadata would then miss.
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &env); err != nil {
		return Object{}, fmt.Errorf("could not decode the admitted %s: %w", kind.Kind, err)
	}
	return env.admitted(kind)
}

// ErrNoObject: a CREATE or UPDATE whose request carries no object (or null).
var ErrNoObject = errors.New("the admission request has no object")

// admitted finds the pod or pod template in a decoded object of the given kind.
func (env *objectEnvelope) admitted(kind metav1.GroupVersionKind) (Object, error) {
	group, kindName := kind.Group, kind.Kind
	apiVersion := metav1.GroupVersion{Group: kind.Group, Version: kind.Version}.String()
	if env.Kind != "" {
		gv, err := parseGroup(env.APIVersion)
		if err != nil {
			return Object{}, err
		}
		group, kindName, apiVersion = gv, env.Kind, env.APIVersion
	}
	meta := placementMeta{}
	if env.Metadata != nil {
		meta = *env.Metadata
	}
	obj := Object{Kind: kindName, Name: meta.Name, APIVersion: apiVersion, MetadataName: meta.Name, UID: meta.UID, NoMetadata: env.Metadata == nil}
	if obj.Name == "" {
		obj.Name = meta.GenerateName
	}
	var template *placementTemplate
	switch {
	case group == "" && kindName == "Pod":
		obj.Paths = podObjectPaths
		obj.Pod = podFrom(meta, env.Spec.placementSpec)
		return obj, nil
	case group == "apps" && (kindName == "Deployment" || kindName == "StatefulSet" || kindName == "DaemonSet" || kindName == "ReplicaSet"),
		group == "batch" && kindName == "Job",
		group == "" && kindName == "ReplicationController":
		obj.Paths, template = templateObjectPaths, env.Spec.Template
	case group == "batch" && kindName == "CronJob":
		obj.Paths = cronJobObjectPaths
		if env.Spec.JobTemplate != nil {
			template = env.Spec.JobTemplate.Spec.Template
		}
	case group == "" && kindName == "PodTemplate":
		obj.Paths, template = podTemplatePaths, env.Template
	default:
		return Object{}, UnhandledKindError{Kind: kindName}
	}
	obj.Template = true
	if template == nil {
		// A ReplicationController may omit its template; nothing to resolve.
		template = &placementTemplate{}
	}
	obj.Pod = podFrom(template.Metadata, template.Spec)
	return obj, nil
}

// parseGroup returns the group of an apiVersion ("apps/v1" → "apps", "v1" → "").
func parseGroup(apiVersion string) (string, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return "", fmt.Errorf("could not decode the admitted object: %w", err)
	}
	return gv.Group, nil
}

// decodedObjectKey is the context key under which the handler passes the object it
// decoded with the rest of the AdmissionReview (a *objectEnvelope, nil when the
// request had no object). kubewebhook's Webhook.Review takes a context and its
// model.AdmissionReview, whose NewObjectRaw is then nil: the object was never kept as
// raw bytes. Reviews from anywhere else (kubewebhook's own handler, a direct call)
// carry NewObjectRaw and are decoded here.
type decodedObjectKey struct{}

// withDecodedObject returns ctx carrying the object the handler decoded.
func withDecodedObject(ctx context.Context, env *objectEnvelope) context.Context {
	return context.WithValue(ctx, decodedObjectKey{}, env)
}

// ObjectFrom returns the admitted object of ar, of the given kind: the one NewHandler
// decoded with the rest of the review, or ar.NewObjectRaw decoded now (a review from
// kubewebhook's own handler or a direct call). An object of a kind that holds no pod
// is an UnhandledKindError.
func ObjectFrom(ctx context.Context, ar model.AdmissionReview, gvk metav1.GroupVersionKind) (Object, error) {
	env, decoded := ctx.Value(decodedObjectKey{}).(*objectEnvelope)
	if !decoded {
		return DecodeObject(ar.NewObjectRaw, gvk)
	}
	if env == nil {
		return Object{}, ErrNoObject
	}
	return env.admitted(gvk)
}
