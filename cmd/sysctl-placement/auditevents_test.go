package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func parseAuditEventsFlags(t *testing.T, args ...string) auditEventsOptions {
	t.Helper()
	var o auditEventsOptions
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestAuditEventsFlags(t *testing.T) {
	t.Run("the defaults are the namespace of the webhook and leader election", func(t *testing.T) {
		t.Setenv("POD_NAMESPACE", "")
		o := parseAuditEventsFlags(t)
		if !o.leaderElect || o.leaderElectionNamespace != "sysctl-placement" || o.maxPodAge != 30*time.Minute {
			t.Errorf("defaults = %+v, want leader election in sysctl-placement and a 30m pod age", o)
		}
		t.Setenv("POD_NAMESPACE", "webhooks")
		if o := parseAuditEventsFlags(t); o.leaderElectionNamespace != "webhooks" {
			t.Errorf("--leader-election-namespace = %q, want POD_NAMESPACE", o.leaderElectionNamespace)
		}
		if err := parseAuditEventsFlags(t).validate(); err != nil {
			t.Errorf("defaults are invalid: %v", err)
		}
	})

	t.Run("values that cannot work are rejected", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--leader-election-namespace="}, "--leader-election-namespace"},
			{[]string{"--events-max-pod-age=0s"}, "--events-max-pod-age"},
			{[]string{"--events-queue-size=0"}, "--events-queue-size"},
			{[]string{"--events-workload-interval=-1m"}, "--events-workload-interval"},
		} {
			err := parseAuditEventsFlags(t, tc.args...).validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.want)
			}
		}
		if err := parseAuditEventsFlags(t, "--leader-elect=false", "--leader-election-namespace=").validate(); err != nil {
			t.Errorf("without leader election the lease namespace is not needed: %v", err)
		}
	})
}
