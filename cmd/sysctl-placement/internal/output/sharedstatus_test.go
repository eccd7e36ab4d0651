package output

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

func TestWriteSharedStatusSaysAgeWriterAndCoverage(t *testing.T) {
	now := time.Date(2026, 12, 3, 4, 0, 42, 0, time.UTC)
	base := discovery.SharedStatus{Namespace: "sysctl-placement", Name: "sysctl-placement-discovery", Published: true,
		PublishedAt: now.Add(-42 * time.Second), Writer: "replica-a", LeaseHolder: "replica-a", Complete: true, NodesRead: 5000, Unreachable: 2, NotRead: 3}
	stale := base
	stale.LeaseHolder = ""
	for _, tc := range []struct {
		name string
		st   *discovery.SharedStatus
		err  error
		want string
	}{
		{"published by the leader", &base, nil, "\nPublished discovery result sysctl-placement/sysctl-placement-discovery: written 42s ago by replica-a, which holds the Lease; complete; 5000 nodes read, 2 unreachable, 3 not read yet.\n"},
		{"its writer no longer leads", &stale, nil, "\nPublished discovery result sysctl-placement/sysctl-placement-discovery: written 42s ago by replica-a, which no longer leads (nobody holds the Lease): replicas ignore it until the holder publishes; complete; 5000 nodes read, 2 unreachable, 3 not read yet.\n"},
		{"unreadable", nil, errors.New("forbidden"), "\nPublished discovery result: forbidden\n"},
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
