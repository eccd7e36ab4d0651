package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestUninstallCleanup(t *testing.T) {
	t.Run("only the named secrets and leases are deleted", func(t *testing.T) {
		in := func(name string) metav1.ObjectMeta {
			return metav1.ObjectMeta{Name: name, Namespace: "sysctl-placement"}
		}
		client := fake.NewClientset(
			&corev1.Secret{ObjectMeta: in("sysctl-placement-tls")},
			&corev1.Secret{ObjectMeta: in("sysctl-placement-ca")},
			&corev1.Secret{ObjectMeta: in("someone-elses")},
			&coordinationv1.Lease{ObjectMeta: in("sysctl-placement-discovery")},
			&coordinationv1.Lease{ObjectMeta: in("sysctl-placement-audit-events")},
		)
		o := uninstallCleanupOptions{
			namespace: "sysctl-placement",
			secrets:   []string{"sysctl-placement-tls", "sysctl-placement-ca"},
			leases:    []string{"sysctl-placement-discovery", "sysctl-placement-audit-events"},
		}
		var out bytes.Buffer
		if err := o.deleteLeftovers(context.Background(), client, &out); err != nil {
			t.Fatal(err)
		}
		secrets, _ := client.CoreV1().Secrets("sysctl-placement").List(context.Background(), metav1.ListOptions{})
		leases, _ := client.CoordinationV1().Leases("sysctl-placement").List(context.Background(), metav1.ListOptions{})
		if len(secrets.Items) != 1 || secrets.Items[0].Name != "someone-elses" || len(leases.Items) != 0 {
			t.Errorf("left secrets %v and %d leases, want only someone-elses", secrets.Items, len(leases.Items))
		}
		if strings.Count(out.String(), ": deleted\n") != 4 {
			t.Errorf("output %q, want four deletions reported", out.String())
		}
		// A retried hook finds nothing left and succeeds.
		out.Reset()
		if err := o.deleteLeftovers(context.Background(), client, &out); err != nil || strings.Count(out.String(), "already gone") != 4 {
			t.Errorf("second run: %v, output %q; want success with all four already gone", err, out.String())
		}
	})

	t.Run("mistakes are refused with a hint", func(t *testing.T) {
		for _, args := range [][]string{
			{"uninstall-cleanup"},
			{"uninstall-cleanup", "--secret", "Not_A_Name"},
			{"uninstall-cleanup", "--lease", "x", "extra"},
		} {
			var stdout, stderr bytes.Buffer
			if code := run(args, nil, &stdout, &stderr); code != 1 {
				t.Errorf("%q: exit %d, want 1 (stderr %q)", args, code, stderr.String())
			}
		}
	})
}
