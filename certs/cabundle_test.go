package certs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// configurations are both webhook configurations, named "wh", with one entry per bundle.
func configurations(bundles ...[]byte) []runtime.Object {
	m := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "wh"}}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "wh"}}
	for i, b := range bundles {
		name := string(rune('a'+i)) + ".sysctl-placement.io"
		m.Webhooks = append(m.Webhooks, admissionregistrationv1.MutatingWebhook{Name: name, ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: b}})
		v.Webhooks = append(v.Webhooks, admissionregistrationv1.ValidatingWebhook{Name: name, ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: b}})
	}
	return []runtime.Object{m, v}
}

func patches(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			out = append(out, p.GetResource().Resource+" "+string(p.GetPatch()))
		}
	}
	return out
}

func TestSetCABundle(t *testing.T) {
	ctx := context.Background()
	both := WebhookConfigurations{Mutating: "wh", Validating: "wh"}
	bundle := []byte("new-ca")
	t.Run("every webhook of both configurations gets the bundle", func(t *testing.T) {
		client := fake.NewClientset(configurations(nil, []byte("old"))...)
		if err := SetCABundle(ctx, client, both, bundle, io.Discard); err != nil {
			t.Fatal(err)
		}
		m, _ := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "wh", metav1.GetOptions{})
		v, _ := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "wh", metav1.GetOptions{})
		for i := range 2 {
			if !bytes.Equal(m.Webhooks[i].ClientConfig.CABundle, bundle) || !bytes.Equal(v.Webhooks[i].ClientConfig.CABundle, bundle) {
				t.Errorf("webhook %d was not given the bundle", i)
			}
		}
	})
	t.Run("only the entries that differ are patched, each guarded by its name", func(t *testing.T) {
		client := fake.NewClientset(configurations(bundle, []byte("old"))...)
		var out bytes.Buffer
		if err := SetCABundle(ctx, client, both, bundle, &out); err != nil {
			t.Fatal(err)
		}
		got := patches(client)
		if len(got) != 2 {
			t.Fatalf("patches %q; want one per configuration", got)
		}
		for _, p := range got {
			if strings.Count(p, `"op":"add"`) != 1 || !strings.Contains(p, `{"op":"test","path":"/webhooks/1/name","value":"b.sysctl-placement.io"}`) {
				t.Errorf("patch %s; want webhook 1 only, guarded by its name", p)
			}
		}
		if strings.Count(out.String(), "caBundle set on 1 of 2 webhooks") != 2 {
			t.Errorf("output %q", out.String())
		}
	})
	t.Run("configurations that agree are not written", func(t *testing.T) {
		client := fake.NewClientset(configurations(bundle, bundle)...)
		var out bytes.Buffer
		if err := SetCABundle(ctx, client, both, bundle, &out); err != nil {
			t.Fatal(err)
		}
		if got := patches(client); len(got) != 0 {
			t.Errorf("patches %q; want none", got)
		}
		if strings.Count(out.String(), "up to date") != 2 {
			t.Errorf("output %q", out.String())
		}
	})
	t.Run("an empty name skips that configuration", func(t *testing.T) {
		client := fake.NewClientset()
		if err := SetCABundle(ctx, client, WebhookConfigurations{}, bundle, io.Discard); err != nil {
			t.Errorf("with both skipped: %v", err)
		}
	})
	t.Run("a missing configuration is named with its kind", func(t *testing.T) {
		client := fake.NewClientset(configurations(nil)[0])
		err := SetCABundle(ctx, client, both, bundle, io.Discard)
		var missing *ConfigurationNotFoundError
		if !errors.As(err, &missing) || missing.Kind != "ValidatingWebhookConfiguration" || missing.Name != "wh" {
			t.Fatalf("err = %v; want the ValidatingWebhookConfiguration wh not found", err)
		}
	})
}
