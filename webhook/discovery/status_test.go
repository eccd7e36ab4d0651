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

func TestPoolsShowsThePublishedResultsAgeWriterAndCoverage(t *testing.T) {
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
}
