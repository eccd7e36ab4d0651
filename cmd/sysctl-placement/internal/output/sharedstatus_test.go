package output

import (
	"bytes"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

func TestWriteSharedStatusSaysAgeWriterAndCoverage(t *testing.T) {
	now := time.Date(2026, 12, 3, 4, 0, 42, 0, time.UTC)
	base := discovery.SharedStatus{Namespace: "sysctl-placement", Name: "sysctl-placement-discovery", Published: true,
		PublishedAt: now.Add(-42 * time.Second), Writer: "replica-a", LeaseHolder: "replica-a", Complete: true, NodesRead: 5000, Unreachable: 2, NotRead: 3}
	stale := base
	stale.LeaseHolder = ""
	// The policy backend's status is written whether or not discovery has published.
	unpublished := discovery.SharedStatus{Namespace: "sysctl-placement", Name: "sysctl-placement-discovery", NotRead: 3,
		Policy: &discovery.PolicyStatus{Writer: "replica-a", UpdatedAt: metav1.NewTime(now.Add(-42 * time.Second)), Active: true}}
	for _, tc := range []struct {
		name string
		st   *discovery.SharedStatus
		err  error
		want string
	}{
		{"published by the leader", &base, nil, "\nPublished discovery result sysctl-placement/sysctl-placement-discovery: written 42s ago by replica-a, which holds the Lease; complete; 5000 nodes read, 2 unreachable, 3 not read yet.\n"},
		{"its writer no longer leads", &stale, nil, "\nPublished discovery result sysctl-placement/sysctl-placement-discovery: written 42s ago by replica-a, which no longer leads (nobody holds the Lease): replicas ignore it until the holder publishes; complete; 5000 nodes read, 2 unreachable, 3 not read yet.\n"},
		{"unreadable", nil, errors.New("forbidden"), "\nPublished discovery result: forbidden\n"},
		{"nothing published yet, the policy backend in force", &unpublished, nil, "\nPublished discovery result sysctl-placement/sysctl-placement-discovery: nothing published yet (a first install reads every kubelet first); nobody holds the Lease; 3 nodes not read yet.\n" +
			"\nPolicy backend: in force (the API server places pods itself); written 42s ago by replica-a.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteSharedStatus(&b, tc.st, tc.err, now); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got  %q\nwant %q", b.String(), tc.want)
			}
		})
	}
}

func TestWritePolicyStatus(t *testing.T) {
	now := time.Date(2026, 12, 3, 4, 0, 42, 0, time.UTC)
	at := metav1.NewTime(now.Add(-42 * time.Second))
	for _, tc := range []struct {
		name string
		st   *discovery.PolicyStatus
		want string
	}{
		{"webhook mode says nothing", nil, ""},
		{"in force, with the estimate", &discovery.PolicyStatus{Writer: "replica-a", UpdatedAt: at, Active: true, Cost: "3 pools: typical pod 2520 units"},
			"\nPolicy backend: in force (the API server places pods itself); written 42s ago by replica-a; estimated cost: 3 pools: typical pod 2520 units.\n"},
		{"refused, with the reason and what it means", &discovery.PolicyStatus{Writer: "replica-a", UpdatedAt: at, Reason: "ServerVersion", Message: "the API server is v1.35.4: the policy backend needs Kubernetes 1.36 or newer"},
			"\nPolicy backend: NOT in force (ServerVersion): the API server is v1.35.4: the policy backend needs Kubernetes 1.36 or newer; the webhook must place pods; written 42s ago by replica-a.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WritePolicyStatus(&b, tc.st, now); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got  %q\nwant %q", b.String(), tc.want)
			}
		})
	}
}
