package webhook

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	sigsjson "sigs.k8s.io/json"
)

// admittedObject is the pod, or the pod template of a workload, that an admission
// request carries, with where its parts sit in the JSON document.
type admittedObject struct {
	kind string
	// name is metadata.name, or generateName when there is none (for log lines).
	name string
	// apiVersion, metadataName and uid identify a workload for WorkloadObserver.
	apiVersion   string
	metadataName string
	uid          types.UID
	template     bool
	paths        podPaths
	pod          *corev1.Pod
	// noMetadata: the document has no metadata object at all (the API server always
	// sends one; a hand-written review may not), so patches must create it.
	noMetadata bool
}

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

// errUnhandledKind marks objects that are not pods or pod-owning workloads; they are
// admitted unchanged.
type errUnhandledKind struct{ kind string }

func (e errUnhandledKind) Error() string {
	return fmt.Sprintf("sysctl-placement does not handle objects of kind %q; admitted unchanged (check the webhook configuration's rules)", e.kind)
}

// decodeObject decodes raw (the request's object) of the given kind (from the
// request; the object's own apiVersion/kind wins when present). The handler's single
// decode (decodeReview) fills objectEnvelope itself and calls admitted directly; this
// is for reviews that kubewebhook decoded.
func decodeObject(raw []byte, kind metav1.GroupVersionKind) (admittedObject, error) {
	if len(raw) == 0 {
		return admittedObject{}, errNoObject
	}
	var env objectEnvelope
	// Case-sensitive, as the API server decodes: encoding/json would read "Metadata"
	// or "metadaTa" as metadata, and a patch to /metadata would then miss.
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &env); err != nil {
		return admittedObject{}, fmt.Errorf("could not decode the admitted %s: %w", kind.Kind, err)
	}
	return env.admitted(kind)
}

// errNoObject: a CREATE or UPDATE whose request carries no object (or null).
var errNoObject = errors.New("the admission request has no object")

// admitted finds the pod or pod template in a decoded object of the given kind.
func (env *objectEnvelope) admitted(kind metav1.GroupVersionKind) (admittedObject, error) {
	group, kindName := kind.Group, kind.Kind
	apiVersion := metav1.GroupVersion{Group: kind.Group, Version: kind.Version}.String()
	if env.Kind != "" {
		gv, err := parseGroup(env.APIVersion)
		if err != nil {
			return admittedObject{}, err
		}
		group, kindName, apiVersion = gv, env.Kind, env.APIVersion
	}
	meta := placementMeta{}
	if env.Metadata != nil {
		meta = *env.Metadata
	}
	obj := admittedObject{kind: kindName, name: meta.Name, apiVersion: apiVersion, metadataName: meta.Name, uid: meta.UID, noMetadata: env.Metadata == nil}
	if obj.name == "" {
		obj.name = meta.GenerateName
	}
	var template *placementTemplate
	switch {
	case group == "" && kindName == "Pod":
		obj.paths = podObjectPaths
		obj.pod = podFrom(meta, env.Spec.placementSpec)
		return obj, nil
	case group == "apps" && (kindName == "Deployment" || kindName == "StatefulSet" || kindName == "DaemonSet" || kindName == "ReplicaSet"),
		group == "batch" && kindName == "Job",
		group == "" && kindName == "ReplicationController":
		obj.paths, template = templateObjectPaths, env.Spec.Template
	case group == "batch" && kindName == "CronJob":
		obj.paths = cronJobObjectPaths
		if env.Spec.JobTemplate != nil {
			template = env.Spec.JobTemplate.Spec.Template
		}
	case group == "" && kindName == "PodTemplate":
		obj.paths, template = podTemplatePaths, env.Template
	default:
		return admittedObject{}, errUnhandledKind{kind: kindName}
	}
	obj.template = true
	if template == nil {
		// A ReplicationController may omit its template; nothing to resolve.
		template = &placementTemplate{}
	}
	obj.pod = podFrom(template.Metadata, template.Spec)
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
