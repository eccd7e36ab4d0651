package certs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// WebhookConfigurations names the MutatingWebhookConfiguration and the
// ValidatingWebhookConfiguration whose every webhook gets the caBundle; an empty name
// skips that one.
type WebhookConfigurations struct {
	Mutating, Validating string
}

// ConfigurationNotFoundError is a webhook configuration that does not exist (the
// manifests are not applied, or it has another name).
type ConfigurationNotFoundError struct {
	Kind, Name string
}

// Error says which configuration is missing; the caller adds what to do about it.
func (e *ConfigurationNotFoundError) Error() string {
	return fmt.Sprintf("the %s %s was not found", e.Kind, e.Name)
}

// fieldManager is who the API server records for our writes.
const fieldManager = "sysctl-placement-certs"

// SetCABundle sets bundle as the caBundle of every webhook of both configurations,
// with one guarded JSON patch per configuration and nothing when all agree, and says
// on out what it did. A configuration that does not exist is a
// *ConfigurationNotFoundError.
func SetCABundle(ctx context.Context, client kubernetes.Interface, names WebhookConfigurations, bundle []byte, out io.Writer) error {
	mutating := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	validating := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	for _, c := range []struct {
		kind, name string
		entries    func() ([]webhookCA, error)
		patch      func([]byte) error
	}{{
		kind: "MutatingWebhookConfiguration", name: names.Mutating,
		entries: func() ([]webhookCA, error) {
			cfg, err := mutating.Get(ctx, names.Mutating, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return caEntries(cfg.Webhooks, func(w *admissionregistrationv1.MutatingWebhook) webhookCA {
				return webhookCA{w.Name, w.ClientConfig.CABundle}
			}), nil
		},
		patch: func(p []byte) error {
			_, err := mutating.Patch(ctx, names.Mutating, types.JSONPatchType, p, metav1.PatchOptions{FieldManager: fieldManager})
			return err
		},
	}, {
		kind: "ValidatingWebhookConfiguration", name: names.Validating,
		entries: func() ([]webhookCA, error) {
			cfg, err := validating.Get(ctx, names.Validating, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return caEntries(cfg.Webhooks, func(w *admissionregistrationv1.ValidatingWebhook) webhookCA {
				return webhookCA{w.Name, w.ClientConfig.CABundle}
			}), nil
		},
		patch: func(p []byte) error {
			_, err := validating.Patch(ctx, names.Validating, types.JSONPatchType, p, metav1.PatchOptions{FieldManager: fieldManager})
			return err
		},
	}} {
		if c.name == "" {
			continue
		}
		entries, err := c.entries()
		switch {
		case apierrors.IsNotFound(err):
			return &ConfigurationNotFoundError{Kind: c.kind, Name: c.name}
		case err != nil:
			return fmt.Errorf("could not read %s %s: %w", c.kind, c.name, err)
		}
		if err := patchCABundles(c.kind, c.name, entries, bundle, out, c.patch); err != nil {
			return err
		}
	}
	return nil
}

// webhookCA is one webhook entry's name and current caBundle.
type webhookCA struct {
	name     string
	caBundle []byte
}

// caEntries lists the entries of either kind of webhook configuration.
func caEntries[W any](webhooks []W, entry func(*W) webhookCA) []webhookCA {
	out := make([]webhookCA, len(webhooks))
	for i := range webhooks {
		out[i] = entry(&webhooks[i])
	}
	return out
}

// patchCABundles sends one JSON patch that sets caBundle on every entry whose
// caBundle differs from bundle, and nothing when all agree. Each change is guarded by
// a test of the entry's name, so a configuration reordered since it was read fails
// the patch instead of getting the bundle on the wrong entry.
func patchCABundles(kind, name string, entries []webhookCA, bundle []byte, out io.Writer, patch func([]byte) error) error {
	var ops []map[string]any
	for i, e := range entries {
		if bytes.Equal(e.caBundle, bundle) {
			continue
		}
		ops = append(ops,
			map[string]any{"op": "test", "path": fmt.Sprintf("/webhooks/%d/name", i), "value": e.name},
			// add sets the member whether or not it exists; replace needs it to.
			map[string]any{"op": "add", "path": fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), "value": bundle},
		)
	}
	if len(ops) == 0 {
		_, err := fmt.Fprintf(out, "%s %s: caBundle of all %d webhooks is up to date\n", kind, name, len(entries))
		return err
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("could not encode the caBundle patch: %w", err)
	}
	if err := patch(body); err != nil {
		return fmt.Errorf("could not set caBundle of %s %s: %w; run certs again", kind, name, err)
	}
	_, err = fmt.Fprintf(out, "%s %s: caBundle set on %d of %d webhooks\n", kind, name, len(ops)/2, len(entries))
	return err
}
