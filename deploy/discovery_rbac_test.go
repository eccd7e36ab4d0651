package deploy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// The discovery identity (discovery-rbac.yaml): the account whose tokens go to the
// kubelets at addresses their own Nodes report, and the one grant serve needs to
// request them.
const (
	discoveryServiceAccount = "sysctl-placement-discovery"
	discoveryTokenRole      = "sysctl-placement-discovery-token"
)

func TestDiscoveryRBAC(t *testing.T) {
	t.Run("the discovery account may only read kubelet configuration", func(t *testing.T) {
		r := render(t, "base")
		sa := one[corev1.ServiceAccount](t, r, "ServiceAccount", discoveryServiceAccount)
		if sa.Namespace != namespace || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s in %q automounts %v; want in %s with automountServiceAccountToken false (no pod runs as it)",
				sa.Name, sa.Namespace, sa.AutomountServiceAccountToken, namespace)
		}
		role := one[rbacv1.ClusterRole](t, r, "ClusterRole", discoveryServiceAccount)
		assertGrants(t, "ClusterRole "+role.Name, role.Rules, []string{"get nodes/configz"})
		binding := one[rbacv1.ClusterRoleBinding](t, r, "ClusterRoleBinding", discoveryServiceAccount)
		want := rbacv1.Subject{Kind: "ServiceAccount", Name: discoveryServiceAccount, Namespace: namespace}
		if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0] != want {
			t.Errorf("ClusterRoleBinding binds %v to %v; want ClusterRole %s to %v", binding.RoleRef, binding.Subjects, role.Name, want)
		}
	})

	t.Run("serve may request tokens of the discovery account only", func(t *testing.T) {
		r := render(t, "base")
		role := one[rbacv1.Role](t, r, "Role", discoveryTokenRole)
		if role.Namespace != namespace {
			t.Errorf("Role %s is in %q; want %s", role.Name, role.Namespace, namespace)
		}
		assertGrants(t, "Role "+role.Name, role.Rules, []string{"create serviceaccounts/token/" + discoveryServiceAccount})
		binding := one[rbacv1.RoleBinding](t, r, "RoleBinding", discoveryTokenRole)
		want := rbacv1.Subject{Kind: "ServiceAccount", Name: "sysctl-placement", Namespace: namespace}
		if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0] != want {
			t.Errorf("RoleBinding binds %v to %v; want Role %s to %v", binding.RoleRef, binding.Subjects, role.Name, want)
		}
	})
}
