package webhook

import (
	"github.com/slok/kubewebhook/v2/pkg/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// WorkloadObserver hears about admissions that deserve an Event on a workload rather
// than on a pod: a controller's pod that the validating webhook denied (the pod never
// exists, so its owner is the only object a user can look at), and a workload whose pod
// template the mutating webhook changed on UPDATE.
//
// Both methods are called on the admission path, only for requests that are not dry
// runs, and must return at once: an implementation queues and drops rather than block
// (package webhook/auditevents does). Events on pods themselves are not recorded here:
// at admission a pod has no name or UID yet; a controller records them once it exists.
type WorkloadObserver interface {
	PodDenied(DeniedPod)
	TemplateChanged(ChangedTemplate)
}

// DeniedPod is a pod owned by a controller (ReplicaSet, Job, StatefulSet, ...) that the
// validating webhook rejected (or the mutating one, for Pod Security).
type DeniedPod struct {
	// Namespace of the pod and of its owner.
	Namespace string
	// Owner is the pod's controller ownerReference.
	Owner metav1.OwnerReference
	// PodName is the pod's name, or its generateName prefix when it has none yet.
	PodName string
	// Outcome is scheduling.OutcomeUnplaceable, OutcomeConflict, OutcomeForbidden or
	// OutcomeOverLimit.
	Outcome scheduling.Outcome
	// Message is the denial message the controller got back.
	Message string
}

// ChangedTemplate is a workload (Deployment, StatefulSet, CronJob, ...) whose pod
// template's host namespaces the mutating webhook changed on UPDATE. Name and UID come
// from the stored object; a CREATE is not reported because the workload has no UID yet.
type ChangedTemplate struct {
	Namespace  string
	APIVersion string
	Kind       string
	Name       string
	UID        types.UID
	// Audit says what was changed and why (host namespaces, dropped sysctls).
	Audit scheduling.Audit
}

// observeDenial tells the observer about a denied controller-owned pod.
func (p planner) observeDenial(ar model.AdmissionReview, obj *review.Object, d *scheduling.Decision) {
	if p.cfg.Workloads == nil || ar.DryRun || obj == nil || obj.Template || d == nil || d.Allowed {
		return
	}
	owner := metav1.GetControllerOfNoCopy(obj.Pod)
	if owner == nil || owner.UID == "" || owner.Name == "" {
		return
	}
	p.cfg.Workloads.PodDenied(DeniedPod{
		Namespace: ar.Namespace,
		Owner:     *owner,
		PodName:   obj.Name,
		Outcome:   d.Outcome,
		Message:   d.Message,
	})
}

// observeTemplateChange tells the observer about a workload template whose host
// namespaces or sysctls were changed on UPDATE (patch non-empty).
func (p planner) observeTemplateChange(ar model.AdmissionReview, obj *review.Object, d *scheduling.Decision, patch []byte) {
	if p.cfg.Workloads == nil || ar.DryRun || ar.Operation != model.OperationUpdate ||
		obj == nil || !obj.Template || d == nil || len(d.Audit.HostNamespaces) == 0 || len(patch) == 0 {
		return
	}
	if obj.UID == "" || obj.MetadataName == "" {
		return
	}
	p.cfg.Workloads.TemplateChanged(ChangedTemplate{
		Namespace:  ar.Namespace,
		APIVersion: obj.APIVersion,
		Kind:       obj.Kind,
		Name:       obj.MetadataName,
		UID:        obj.UID,
		Audit:      d.Audit,
	})
}
