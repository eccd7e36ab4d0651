package discovery

// What `sysctl-placement pools` says of the published discovery result: its age, who
// wrote it and whether that replica still leads, and which nodes it covers.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SharedStatus describes the published result.
type SharedStatus struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Published is false while nothing has been published (the ConfigMap as shipped).
	Published   bool      `json:"published"`
	PublishedAt time.Time `json:"publishedAt,omitzero"`
	// Writer is the replica that wrote it; LeaseHolder the one holding the Lease now
	// ("" when none does). Replicas take a result only from the holder.
	Writer      string `json:"writer,omitempty"`
	LeaseHolder string `json:"leaseHolder,omitempty"`
	// Complete: the writer had read every kubelet once.
	Complete bool `json:"complete"`
	// NodesRead are the nodes the result names; Unreachable those whose last read
	// failed; NotRead the cluster's nodes it does not name yet.
	NodesRead   int `json:"nodesRead"`
	Unreachable int `json:"unreachable"`
	NotRead     int `json:"notRead"`
	// Policy is what the policy backend's sync last did (serve --admission=policy);
	// nil in webhook mode.
	Policy *PolicyStatus `json:"policy,omitempty"`
}

// ReadSharedStatus reads the published result in namespace and its Lease's holder,
// and counts which of nodes (the cluster's node names) it covers. A missing ConfigMap
// is an error that says so.
func ReadSharedStatus(ctx context.Context, client kubernetes.Interface, namespace string, nodes []string) (*SharedStatus, error) {
	cfg := &ShareConfig{Namespace: namespace, Name: SharedName, Lease: SharedName}
	cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, cfg.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no ConfigMap %s/%s: the webhook is not installed there, or runs without --leader-elect (each replica reads every kubelet itself)", namespace, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("could not read the published discovery result %s/%s: %w", namespace, cfg.Name, err)
	}
	st := &SharedStatus{Namespace: namespace, Name: cfg.Name}
	res, err := parseShared(cm)
	if err != nil {
		return nil, err
	}
	if data, ok := cm.Data[PolicyKey]; ok {
		st.Policy = &PolicyStatus{}
		if err := json.Unmarshal([]byte(data), st.Policy); err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s: %s is not a policy status (%v): delete the key, the elected replica writes it again", namespace, cfg.Name, PolicyKey, err)
		}
	}
	if st.LeaseHolder, err = leaseHolder(ctx, client, cfg); err != nil {
		return nil, err
	}
	if res == nil {
		st.NotRead = len(nodes)
		return st, nil
	}
	st.Published, st.PublishedAt, st.Writer, st.Complete = true, res.PublishedAt.Time, res.Leader, res.Complete
	named := res.named()
	for _, p := range res.Pools {
		st.Unreachable += len(p.Unreachable)
	}
	st.NodesRead = len(named)
	for _, n := range nodes {
		if !named[n] {
			st.NotRead++
		}
	}
	return st, nil
}
