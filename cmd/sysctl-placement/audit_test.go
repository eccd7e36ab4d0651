package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/audit"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

func TestAuditFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown output format is refused", []string{"-o", "wide"}, "use table, json or yaml"},
		{"an unknown --fail-on is refused", []string{"--fail-on", "slow"}, "use broken, unplaceable or both"},
		{"a zero page size is refused", []string{"--page-size", "0"}, "--page-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCommand(t, "", append([]string{"audit"}, tc.args...)...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.want)
			}
		})
	}
}

func TestAuditShowsPolicyStatus(t *testing.T) {
	// The ConfigMap as serve --admission=policy leaves it after a refusal: the policy
	// status beside an empty discovery result.
	refused := discovery.PolicyStatus{Writer: "serve-0", UpdatedAt: metav1.Now(), Reason: "Cost", Message: "the policies would cost the API server more than the webhook", Cost: "3 ms"}
	status, err := json.Marshal(refused)
	if err != nil {
		t.Fatal(err)
	}
	withStatus := func() *fake.Clientset {
		return fake.NewClientset(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "sysctl-placement", Name: discovery.SharedName},
			Data:       map[string]string{discovery.PolicyKey: string(status)},
		})
	}
	const want = "Policy backend: NOT in force (Cost): the policies would cost the API server more than the webhook; the webhook must place pods"
	print := func(t *testing.T, client *fake.Clientset, format string, nodes []string) string {
		t.Helper()
		var out bytes.Buffer
		o := auditOptions{output: format, webhookNamespace: "sysctl-placement"}
		if err := writeAudit(context.Background(), &out, o, audit.Report{}, client, nodes); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}

	t.Run("audit's table ends with the line pools prints", func(t *testing.T) {
		client := withStatus()
		got := print(t, client, "table", nil)
		if !strings.Contains(got, want) {
			t.Errorf("audit printed:\n%s\nwant the policy backend's status %q", got, want)
		}
		var pools bytes.Buffer
		if err := writeWebhookStatus(context.Background(), &pools, client, "sysctl-placement", nil); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(got, pools.String()) {
			t.Errorf("audit's status:\n%s\ndiffers from pools':\n%s", got, pools.String())
		}
	})
	t.Run("with discovery on, the published result comes first, as in pools", func(t *testing.T) {
		got := print(t, withStatus(), "table", []string{"node-a"})
		if i, j := strings.Index(got, "Published discovery result"), strings.Index(got, want); i < 0 || j < i {
			t.Errorf("audit printed:\n%s\nwant the discovery result, then the policy backend's status", got)
		}
	})
	t.Run("json stays the report alone", func(t *testing.T) {
		got := print(t, withStatus(), "json", nil)
		var report map[string]any
		if err := json.Unmarshal([]byte(got), &report); err != nil || strings.Contains(got, "Policy backend") {
			t.Errorf("audit -o json printed %q (%v); want the report alone", got, err)
		}
	})
	t.Run("in webhook mode, without the ConfigMap, nothing is added", func(t *testing.T) {
		if got := print(t, fake.NewClientset(), "table", nil); strings.Contains(got, "Policy backend") || strings.Contains(got, "Published") {
			t.Errorf("audit printed:\n%s\nwant no status", got)
		}
	})
}
