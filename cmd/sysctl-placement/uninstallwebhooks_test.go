package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var chartWebhooks = uninstallWebhooksOptions{mutatingWebhook: "sysctl-placement", validatingWebhook: "sysctl-placement"}

func TestUninstallWebhooks(t *testing.T) {
	t.Run("both configurations are deleted and nothing else", func(t *testing.T) {
		others := []runtime.Object{
			&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector"}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "gatekeeper"}},
		}
		client := fake.NewClientset(append(webhookConfigurations(), others...)...)
		var out bytes.Buffer
		if err := chartWebhooks.deleteWebhookConfigurations(context.Background(), client, &out); err != nil {
			t.Fatal(err)
		}
		api := client.AdmissionregistrationV1()
		mutating, _ := api.MutatingWebhookConfigurations().List(context.Background(), metav1.ListOptions{})
		validating, _ := api.ValidatingWebhookConfigurations().List(context.Background(), metav1.ListOptions{})
		var left []string
		for _, m := range mutating.Items {
			left = append(left, "mutating/"+m.Name)
		}
		for _, v := range validating.Items {
			left = append(left, "validating/"+v.Name)
		}
		if want := "mutating/istio-sidecar-injector validating/gatekeeper"; strings.Join(left, " ") != want {
			t.Errorf("left %v, want only the other webhooks' configurations: %s", left, want)
		}
		if want := "MutatingWebhookConfiguration sysctl-placement: deleted\nValidatingWebhookConfiguration sysctl-placement: deleted\n"; out.String() != want {
			t.Errorf("output %q, want %q", out.String(), want)
		}
	})

	// A retried hook, or an uninstall after the configurations were deleted by hand,
	// must succeed: nothing is left to do.
	t.Run("configurations already gone count as deleted", func(t *testing.T) {
		var out bytes.Buffer
		if err := chartWebhooks.deleteWebhookConfigurations(context.Background(), fake.NewClientset(), &out); err != nil {
			t.Fatalf("with nothing to delete: %v, want success", err)
		}
		if strings.Count(out.String(), "already gone") != 2 {
			t.Errorf("output %q, want both configurations reported already gone", out.String())
		}
	})

	t.Run("a refused delete fails the command", func(t *testing.T) {
		client := fake.NewClientset(webhookConfigurations()...)
		client.PrependReactor("delete", "validatingwebhookconfigurations", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"}, "sysctl-placement", nil)
		})
		err := chartWebhooks.deleteWebhookConfigurations(context.Background(), client, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "ValidatingWebhookConfiguration sysctl-placement") || !apierrors.IsForbidden(err) {
			t.Errorf("err = %v, want the Forbidden error naming the ValidatingWebhookConfiguration", err)
		}
	})

	t.Run("mistakes are refused with a hint", func(t *testing.T) {
		for _, args := range [][]string{
			{"uninstall-webhooks", "--mutating-webhook", "", "--validating-webhook", ""},
			{"uninstall-webhooks", "sysctl-placement"},
		} {
			var stdout, stderr bytes.Buffer
			if code := run(args, nil, &stdout, &stderr); code != 1 {
				t.Errorf("%q: exit %d, want 1 (stderr %q)", args, code, stderr.String())
			}
		}
	})
}

func TestUninstallWebhooksOnlyTheNamedOnes(t *testing.T) {
	client := fake.NewClientset(webhookConfigurations()...)
	o := uninstallWebhooksOptions{mutatingWebhook: "sysctl-placement"}
	if err := o.deleteWebhookConfigurations(context.Background(), client, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), "sysctl-placement", metav1.GetOptions{}); err != nil {
		t.Errorf("an empty --validating-webhook deleted the ValidatingWebhookConfiguration: %v", err)
	}
}
