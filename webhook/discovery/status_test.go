package discovery

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func sharedObjects(t *testing.T, res *SharedResult, holder string) []runtime.Object {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: SharedName, Namespace: "sysctl-placement"}}
	if res != nil {
		data, err := marshalShared(*res)
		if err != nil {
			t.Fatal(err)
		}
		cm.BinaryData = map[string][]byte{SharedBinaryKey: data}
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: SharedName, Namespace: "sysctl-placement"}}
	if holder != "" {
		lease.Spec.HolderIdentity = ptr.To(holder)
	}
	return []runtime.Object{cm, lease}
}

func TestPoolsStatus(t *testing.T) {
	t.Run("pools shows the published results age writer and coverage", func(t *testing.T) {
		published := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
		res := &SharedResult{Leader: "replica-a", Complete: true, PublishedAt: metav1.NewTime(published), Pools: map[string]SharedPool{
			"ipc": {Allowlists: []SharedAllowlist{{Patterns: []string{"kernel.sem"}, Nodes: []string{"ipc-1", "ipc-2"}}}, Unreachable: map[string]string{"ipc-3": "connection refused"}},
		}}
		nodes := []string{"ipc-1", "ipc-2", "ipc-3", "ipc-4", "ipc-5"}
		for _, tc := range []struct {
			name   string
			holder string
			want   SharedStatus
		}{
			{"written by the Lease holder", "replica-a", SharedStatus{Writer: "replica-a", LeaseHolder: "replica-a"}},
			{"written by a replica that no longer leads", "replica-b", SharedStatus{Writer: "replica-a", LeaseHolder: "replica-b"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, err := ReadSharedStatus(context.Background(), fake.NewClientset(sharedObjects(t, res, tc.holder)...), "sysctl-placement", nodes)
				if err != nil {
					t.Fatal(err)
				}
				want := tc.want
				want.Namespace, want.Name, want.Published, want.PublishedAt, want.Complete = "sysctl-placement", SharedName, true, published, true
				want.NodesRead, want.Unreachable, want.NotRead = 3, 1, 2
				if !st.PublishedAt.Equal(want.PublishedAt) {
					t.Errorf("PublishedAt %v, want %v", st.PublishedAt, want.PublishedAt)
				}
				st.PublishedAt = want.PublishedAt
				if *st != want {
					t.Errorf("status %+v\nwant   %+v", *st, want)
				}
			})
		}
		t.Run("nothing published yet: every node is not read yet", func(t *testing.T) {
			st, err := ReadSharedStatus(context.Background(), fake.NewClientset(sharedObjects(t, nil, "replica-a")...), "sysctl-placement", nodes)
			if err != nil || st.Published || st.NotRead != 5 || st.LeaseHolder != "replica-a" {
				t.Errorf("status %+v, %v; want unpublished, 5 not read, the holder named", st, err)
			}
		})
		t.Run("no ConfigMap: the error says why there may be none", func(t *testing.T) {
			_, err := ReadSharedStatus(context.Background(), fake.NewClientset(), "sysctl-placement", nodes)
			if err == nil || !strings.Contains(err.Error(), "--leader-elect") {
				t.Errorf("err = %v, want one that names the topology without a shared result", err)
			}
		})
	})
}

// The policy backend's status shares the ConfigMap with the discovery result, under a
// key of its own.
func TestPolicyStatus(t *testing.T) {
	published := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	res := &SharedResult{Leader: "replica-a", Complete: true, PublishedAt: metav1.NewTime(published), Pools: map[string]SharedPool{
		"ipc": {Allowlists: []SharedAllowlist{{Patterns: []string{"kernel.sem"}, Nodes: []string{"ipc-1"}}}},
	}}
	want := PolicyStatus{Writer: "replica-a", UpdatedAt: metav1.NewTime(published), Reason: "Cost", Message: "use the webhook", Cost: "10 pools"}
	t.Run("pools reads it, and the discovery result is left as it was", func(t *testing.T) {
		client := fake.NewClientset(sharedObjects(t, res, "replica-a")...)
		if err := PublishPolicyStatus(t.Context(), client, "sysctl-placement", want); err != nil {
			t.Fatal(err)
		}
		st, err := ReadSharedStatus(t.Context(), client, "sysctl-placement", []string{"ipc-1"})
		if err != nil {
			t.Fatal(err)
		}
		if st.Policy == nil || st.Policy.Reason != want.Reason || st.Policy.Message != want.Message || st.Policy.Active {
			t.Errorf("policy status %+v; want %+v", st.Policy, want)
		}
		if !st.Published || st.Writer != "replica-a" || st.NodesRead != 1 {
			t.Errorf("the discovery result changed under the policy status: %+v", st)
		}
	})
	t.Run("a missing ConfigMap is not created, and the error says how to bring it back", func(t *testing.T) {
		err := PublishPolicyStatus(t.Context(), fake.NewClientset(), "sysctl-placement", want)
		if err == nil || !strings.Contains(err.Error(), "re-apply the manifests") {
			t.Errorf("err = %v; want one that says to re-apply the manifests", err)
		}
	})
}
