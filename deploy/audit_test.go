package deploy

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestTheAuditKustomizationHoldsOnlyItsClusterRole(t *testing.T) {
	r := render(t, "audit")
	// Its grants are held to deploy/apicalls by TestEachIdentityIsGrantedExactlyTheCallsItMakes.
	one[rbacv1.ClusterRole](t, r, "ClusterRole", "sysctl-placement-audit")
	if len(r.resources.Resources()) != 1 {
		t.Errorf("deploy/audit must hold only the ClusterRole (a binding names who runs the audit), got %d objects", len(r.resources.Resources()))
	}
}
