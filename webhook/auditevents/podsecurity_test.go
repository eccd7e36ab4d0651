package auditevents

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook"
)

func TestADenialForPodSecurityIsReportedAsSuch(t *testing.T) {
	owner := metav1.OwnerReference{Kind: "ReplicaSet", Name: "postgres-5c9"}
	got := ForDenial(webhook.DeniedPod{Owner: owner, PodName: "postgres-5c9-", Outcome: scheduling.OutcomeForbidden,
		Message: "forbidden by Pod Security: namespace shop enforces baseline:latest"})
	if got.Reason != ReasonSysctlForbiddenByPodSecurity || got.Type != corev1.EventTypeWarning || got.Action != "Deny" ||
		!strings.Contains(got.Note, "denied pod postgres-5c9-: forbidden by Pod Security") {
		t.Fatalf("Pod Security denial = %+v", got)
	}
}
