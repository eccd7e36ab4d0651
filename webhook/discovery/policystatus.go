package discovery

// In policy mode (serve --admission=policy) the replica that keeps the admission
// policies in sync says how that goes in the ConfigMap that holds the discovery
// result, under a key of its own, so that `pools` reads one object for both.

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// PolicyKey is the ConfigMap data key holding the PolicyStatus as JSON.
const PolicyKey = "policy.json"

// PolicyStatus is what the policy backend's sync last did.
type PolicyStatus struct {
	// Writer is the replica that keeps the policies in sync.
	Writer    string      `json:"writer"`
	UpdatedAt metav1.Time `json:"updatedAt"`
	// Active: the policies in force are the current configuration's.
	Active bool `json:"active"`
	// Reason says why they are not (a fixed set: the reason label of
	// sysctl_placement_policy_refused_total), Message what to do about it.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Cost is the estimate of the last rendering.
	Cost string `json:"cost,omitempty"`
	// Warnings are the API server's type-checking warnings on the applied policies.
	Warnings []string `json:"warnings,omitempty"`
}

// PublishPolicyStatus writes st into the ConfigMap SharedName in namespace, leaving the
// discovery result alone (a merge patch of one key: RBAC patch on that name). A
// missing ConfigMap is not created, as for the discovery result.
func PublishPolicyStatus(ctx context.Context, client kubernetes.Interface, namespace string, st PolicyStatus) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"data": map[string]string{PolicyKey: string(data)}})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().ConfigMaps(namespace).Patch(ctx, SharedName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "sysctl-placement-policy"})
	switch {
	case apierrors.IsNotFound(err):
		return sharedMissing(&ShareConfig{Namespace: namespace, Name: SharedName}, err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("could not update ConfigMap %s/%s (grant patch on it, deploy/components/policy-backend): %w", namespace, SharedName, err)
	}
	return err
}
