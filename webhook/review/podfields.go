package review

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The admitted object is decoded into these narrow types, not into corev1.Pod: a
// pod's containers, volumes and env are most of its JSON and nothing here reads them.
// They hold every field that scheduling.Plan, the JSON patch (which must know what
// exists) and the Events read. A field Plan starts reading must be added here (and to
// podFrom, and to keepGoldenFields in webhook/podfields_test.go); until it is,
// webhook's TestNarrowDecode fails: it plans every golden pod with every other field
// filled at random and wants the narrow decode to decide the same. The API server
// has decoded and validated the object before it calls a webhook, so a malformed
// field this decode skips cannot arrive from it.

// placementMeta is the part of a pod's or template's metadata that placement reads.
type placementMeta struct {
	Name         string `json:"name,omitempty"`
	GenerateName string `json:"generateName,omitempty"`
	// UID identifies a workload whose template changed (WorkloadObserver).
	UID             types.UID               `json:"uid,omitempty"`
	Labels          map[string]string       `json:"labels,omitempty"`
	Annotations     map[string]string       `json:"annotations,omitempty"`
	OwnerReferences []metav1.OwnerReference `json:"ownerReferences,omitempty"`
}

// placementSpec is the part of a PodSpec that placement reads.
type placementSpec struct {
	NodeName     string            `json:"nodeName,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Affinity keeps only nodeAffinity; a present affinity stays present (the patch
	// adds below it rather than replacing it).
	Affinity *struct {
		NodeAffinity *corev1.NodeAffinity `json:"nodeAffinity,omitempty"`
	} `json:"affinity,omitempty"`
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// SecurityContext keeps only sysctls, and whether it is present.
	SecurityContext *struct {
		Sysctls sysctlList `json:"sysctls,omitempty"`
	} `json:"securityContext,omitempty"`
	HostNetwork bool  `json:"hostNetwork,omitempty"`
	HostPID     bool  `json:"hostPID,omitempty"`
	HostIPC     bool  `json:"hostIPC,omitempty"`
	HostUsers   *bool `json:"hostUsers,omitempty"`
}

// sysctlList is spec.securityContext.sysctls. The single decode (reviewjson.go) keeps
// the names and values of its first scheduling.MaxSysctls+1 entries only: Plan denies a
// longer list by its length alone, before it reads any entry, and a hostile pod's tens
// of thousands of strings would otherwise be most of a review's memory.
type sysctlList []corev1.Sysctl

// placementTemplate is a pod template (or a pod) as placement sees it.
type placementTemplate struct {
	Metadata placementMeta `json:"metadata"`
	Spec     placementSpec `json:"spec"`
}

// podFrom builds the corev1.Pod that scheduling.Plan takes; it shares maps and slices
// with the decoded fields.
func podFrom(meta placementMeta, spec placementSpec) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            meta.Name,
			GenerateName:    meta.GenerateName,
			Labels:          meta.Labels,
			Annotations:     meta.Annotations,
			OwnerReferences: meta.OwnerReferences,
		},
		Spec: corev1.PodSpec{
			NodeName:     spec.NodeName,
			NodeSelector: spec.NodeSelector,
			Tolerations:  spec.Tolerations,
			HostNetwork:  spec.HostNetwork,
			HostPID:      spec.HostPID,
			HostIPC:      spec.HostIPC,
			HostUsers:    spec.HostUsers,
		},
	}
	if spec.Affinity != nil {
		pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: spec.Affinity.NodeAffinity}
	}
	if spec.SecurityContext != nil {
		pod.Spec.SecurityContext = &corev1.PodSecurityContext{Sysctls: spec.SecurityContext.Sysctls}
	}
	return pod
}
