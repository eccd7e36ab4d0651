package deploy

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestAuditKustomization(t *testing.T) {
	t.Run("the audit kustomization holds only its cluster role", func(t *testing.T) {
		r := render(t, "audit")
		// Its grants are held to deploy/apicalls by TestRBAC/each identity is granted exactly the calls it makes.
		one[rbacv1.ClusterRole](t, r, "ClusterRole", "sysctl-placement-audit")
		if len(r.resources.Resources()) != 1 {
			t.Errorf("deploy/audit must hold only the ClusterRole (a binding names who runs the audit), got %d objects", len(r.resources.Resources()))
		}
	})
}
