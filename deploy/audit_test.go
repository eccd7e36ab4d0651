package deploy

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestAuditClusterRole(t *testing.T) {
	r := render(t, "audit")
	role := one[rbacv1.ClusterRole](t, r, "ClusterRole", "sysctl-placement-audit")
	assertGrants(t, "ClusterRole sysctl-placement-audit", role.Rules, []string{
		"get namespaces",
		"list namespaces",
		"list nodes",
		"watch nodes",
		"get nodes/configz",
		"list pods",
		"list replicationcontrollers",
		"list events",
		"list deployments.apps",
		"list replicasets.apps",
		"list statefulsets.apps",
		"list daemonsets.apps",
		"list jobs.batch",
		"list cronjobs.batch",
	})
	if len(r.resources.Resources()) != 1 {
		t.Errorf("deploy/audit must hold only the ClusterRole (a binding names who runs the audit), got %d objects", len(r.resources.Resources()))
	}
}
