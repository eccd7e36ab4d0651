package auditevents

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

func TestAdmittedAudit(t *testing.T) {
	affinity := scheduling.Audit{
		Pools: []string{"ipc"},
		AffinityTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"ipc"}}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"ipc-b"}}}},
		},
	}
	stripped := scheduling.Audit{HostNamespaces: []scheduling.HostNamespaceChange{{Field: "hostIPC", Mode: scheduling.ClashStrip, Sysctls: []string{"kernel.shmmax"}}}}
	dropped := scheduling.Audit{DroppedSysctls: []string{"net.core.somaxconn"},
		HostNamespaces: []scheduling.HostNamespaceChange{{Field: "hostNetwork", Mode: scheduling.ClashDropSysctls, Sysctls: []string{"net.core.somaxconn"}}}}
	existingTerm := func(spec *corev1.PodSpec) {
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
		}}}
	}

	for _, tc := range []struct {
		name    string
		audit   scheduling.Audit
		before  func(*corev1.PodSpec) // the pod as its creator wrote it
		applied bool                  // the webhook's changes were made
		after   func(*corev1.PodSpec) // what happened to it since, or instead
		want    error                 // nil: errNotCarried, unless the name says admitted
	}{
		{name: "a pod the webhook placed is admitted", audit: ipcAudit, applied: true},
		{name: "affinity ANDed into the pod's own term is admitted", audit: affinity, before: existingTerm, applied: true},
		{name: "a stripped host namespace is admitted", audit: stripped, before: func(s *corev1.PodSpec) { s.HostIPC = true }, applied: true},
		{name: "dropped sysctls are admitted", audit: dropped, before: func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.core.somaxconn", Value: "1"}, {Name: "kernel.shmmax", Value: "1"}}}
		}, applied: true},
		{name: "a record of no change is a forgery", audit: scheduling.Audit{Pools: []string{"ipc"}}, applied: true, want: errNoChange},
		{name: "a missing nodeSelector is a forgery", audit: ipcAudit},
		{name: "a missing toleration is a forgery", audit: ipcAudit, applied: true, after: func(s *corev1.PodSpec) { s.Tolerations = nil }},
		{name: "a nodeSelector with another value is a forgery", audit: ipcAudit, applied: true, after: func(s *corev1.PodSpec) {
			s.NodeSelector["sysctl-placement.io/pool"] = "other"
		}},
		{name: "affinity not in every term is a forgery", audit: affinity, before: existingTerm, after: func(s *corev1.PodSpec) {
			terms := &s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			*terms = append(*terms, affinity.AffinityTerms[0])
		}},
		{name: "a host namespace still shared is a forgery", audit: stripped, before: func(s *corev1.PodSpec) { s.HostIPC = true }},
		{name: "a dropped sysctl still set is a forgery", audit: dropped, before: func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.core.somaxconn", Value: "1"}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(tc.audit)
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{scheduling.AnnotationPlacement: string(raw)}}}
			if tc.before != nil {
				tc.before(&pod.Spec)
			}
			if tc.applied {
				scheduling.ApplyTo(&pod.Spec, changesOf(tc.audit))
			}
			if tc.after != nil {
				tc.after(&pod.Spec)
			}
			want := errNotCarried
			switch {
			case tc.want != nil:
				want = tc.want
			case strings.HasSuffix(tc.name, " admitted"):
				want = nil
			}
			if _, err := admittedAudit(pod); !errors.Is(err, want) {
				t.Errorf("admittedAudit: %v, want %v", err, want)
			}
		})
	}

	t.Run("an annotation that does not parse or is too large is not an audit record", func(t *testing.T) {
		for _, raw := range []string{"{not json", `{"pools":["ipc"],"padding":"` + strings.Repeat("A", MaxPlacementAnnotationBytes) + `"}`} {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{scheduling.AnnotationPlacement: raw}}}
			if _, err := admittedAudit(pod); err == nil || errors.Is(err, errNotCarried) || errors.Is(err, errNoChange) {
				t.Errorf("admittedAudit of %d bytes: %v, want an invalid annotation", len(raw), err)
			}
		}
	})
}
