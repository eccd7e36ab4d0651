package cluster

// This file gives `serve` the identity it has in a real installation: the shipped
// ServiceAccount, bound to exactly the shipped RBAC, authenticated by a bound token.
// A test that runs serve this way fails on a missing permission (an informer that never
// syncs, a forbidden Event) instead of passing as an administrator.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// ShippedIdentity is the webhook's ServiceAccount as deploy/base installs it.
type ShippedIdentity struct {
	// Namespace and ServiceAccount name the account (sysctl-placement/sysctl-placement).
	Namespace, ServiceAccount string
	// Kubeconfig authenticates as the account with a bound token.
	Kubeconfig string
	// RBAC lists the kind/name of every RBAC object applied, for test messages.
	RBAC []string
}

// ApplyShippedIdentity renders deploy/base, applies its Namespace, ServiceAccount,
// ClusterRoles, ClusterRoleBindings, Roles and RoleBindings unchanged, and the empty
// discovery-result ConfigMap that serve updates but never creates (and nothing else: no
// Deployment, no webhook configuration, no PlacementConfig), requests a token for the
// account with the TokenRequest API and writes a kubeconfig for it. It is idempotent:
// every test process may call it again.
func (c *Cluster) ApplyShippedIdentity(ctx context.Context) (*ShippedIdentity, error) {
	docs, err := c.Kustomize(ctx, filepath.Join(RepoRoot(), "deploy", "base"))
	if err != nil {
		return nil, err
	}
	id := &ShippedIdentity{}
	// The webhook's account is the one its Deployment runs as; deploy/base also ships
	// discovery's (sysctl-placement-discovery), which serve only requests tokens of.
	for _, doc := range docs {
		var d struct {
			metav1.TypeMeta `json:",inline"`
			Spec            struct {
				Template struct {
					Spec struct {
						ServiceAccountName string `json:"serviceAccountName"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &d); err != nil {
			return nil, err
		}
		if d.Kind == "Deployment" {
			id.ServiceAccount = d.Spec.Template.Spec.ServiceAccountName
		}
	}
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		name, err := c.applyIdentityObject(ctx, tm.Kind, doc, id)
		if err != nil {
			return nil, fmt.Errorf("applying the shipped %s: %w", tm.Kind, err)
		}
		if name != "" {
			id.RBAC = append(id.RBAC, tm.Kind+"/"+name)
		}
	}
	if id.ServiceAccount == "" || id.Namespace == "" {
		return nil, fmt.Errorf("deploy/base renders no ServiceAccount %q for its Deployment", id.ServiceAccount)
	}
	expiry := int64(time.Hour / time.Second)
	tr, err := c.Client.CoreV1().ServiceAccounts(id.Namespace).CreateToken(ctx, id.ServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("could not request a token for ServiceAccount %s/%s: %w", id.Namespace, id.ServiceAccount, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthorityData: c.Config.CAData}
	kc.AuthInfos[id.ServiceAccount] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["sa"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: id.ServiceAccount, Namespace: id.Namespace}
	kc.CurrentContext = "sa"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, err
	}
	id.Kubeconfig = filepath.Join(c.WorkDir, "serviceaccount-"+id.ServiceAccount+".kubeconfig")
	if err := os.WriteFile(id.Kubeconfig, data, 0o600); err != nil {
		return nil, err
	}
	return id, nil
}

// applyRBACFile applies the RBAC objects of a component's manifest (a kustomize
// Component cannot be rendered alone) as ApplyShippedIdentity applies the base's.
func (c *Cluster) applyRBACFile(ctx context.Context, path string, id *ShippedIdentity) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		name, err := c.applyIdentityObject(ctx, tm.Kind, doc, id)
		if err != nil {
			return fmt.Errorf("applying %s of %s: %w", tm.Kind, path, err)
		}
		if name != "" {
			id.RBAC = append(id.RBAC, tm.Kind+"/"+name)
		}
	}
	return nil
}

// discoveryResult is the ConfigMap in which serve's elected replica publishes the
// discovery result (discovery.SharedName in the main module, which this one does not
// import).
const discoveryResult = "sysctl-placement-discovery"

// applyIdentityObject creates or updates one rendered object if it is part of the
// webhook's identity (or is the discovery result it publishes in), and returns the
// name of RBAC objects.
func (c *Cluster) applyIdentityObject(ctx context.Context, kind string, doc []byte, id *ShippedIdentity) (string, error) {
	core, rbac := c.Client.CoreV1(), c.Client.RbacV1()
	switch kind {
	case "Namespace":
		var o corev1.Namespace
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return "", err
		}
		if _, err := core.Namespaces().Create(ctx, &o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		}
	case "ServiceAccount":
		var o corev1.ServiceAccount
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return "", err
		}
		if o.Name == id.ServiceAccount {
			id.Namespace = o.Namespace
		}
		if _, err := core.ServiceAccounts(o.Namespace).Create(ctx, &o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		}
	case "ConfigMap":
		var o corev1.ConfigMap
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return "", err
		}
		// Only the discovery result (tests give serve their own PlacementConfig), and
		// never over an existing one: like kubectl apply of a manifest with no data, it
		// leaves a published result alone.
		if o.Name != discoveryResult {
			return "", nil
		}
		if _, err := core.ConfigMaps(o.Namespace).Create(ctx, &o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		}
	case "ClusterRole":
		var o rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return "", err
		}
		return o.Name, createOrUpdate(ctx, &o, rbac.ClusterRoles().Create, rbac.ClusterRoles().Update)
	case "ClusterRoleBinding":
		var o rbacv1.ClusterRoleBinding
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return "", err
		}
		return o.Name, createOrUpdate(ctx, &o, rbac.ClusterRoleBindings().Create, rbac.ClusterRoleBindings().Update)
	case "Role":
		var o rbacv1.Role
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return "", err
		}
		return o.Namespace + "/" + o.Name, createOrUpdate(ctx, &o, rbac.Roles(o.Namespace).Create, rbac.Roles(o.Namespace).Update)
	case "RoleBinding":
		var o rbacv1.RoleBinding
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			return "", err
		}
		return o.Namespace + "/" + o.Name, createOrUpdate(ctx, &o, rbac.RoleBindings(o.Namespace).Create, rbac.RoleBindings(o.Namespace).Update)
	}
	return "", nil
}

// createOrUpdate creates obj, or replaces the existing object of that name.
func createOrUpdate[T any](ctx context.Context, obj T,
	create func(context.Context, T, metav1.CreateOptions) (T, error),
	update func(context.Context, T, metav1.UpdateOptions) (T, error)) error {
	_, err := create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = update(ctx, obj, metav1.UpdateOptions{})
	}
	return err
}
