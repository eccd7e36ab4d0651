package main

// The cluster and directory sides of `certs`: which Secrets it may own, what it
// writes, and the same material as files for --write-dir.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/sysctl-placement/sysctl-placement/certs"
)

// ensureCluster brings both Secrets and both webhook configurations' caBundle up to
// date, writing only what differs.
func (o *certsOptions) ensureCluster(ctx context.Context, client kubernetes.Interface, out io.Writer) error {
	secrets := client.CoreV1().Secrets(o.namespace)
	tlsCurrent, err := o.readSecret(ctx, secrets, o.secret, corev1.SecretTypeTLS, "--secret")
	if err != nil {
		return err
	}
	caCurrent, err := o.readSecret(ctx, secrets, o.caSecret, corev1.SecretTypeOpaque, "--ca-secret")
	if err != nil {
		return err
	}
	current := map[string][]byte{}
	if tlsCurrent != nil {
		// A Secret from before the CA had its own keeps ca.key: carried over, so the
		// move keeps the CA and caBundle.
		maps.Copy(current, tlsCurrent.Data)
	}
	if caCurrent != nil {
		current[certs.KeyCACert], current[certs.KeyCAKey] = caCurrent.Data[certs.KeyCACert], caCurrent.Data[certs.KeyCAKey]
	}
	want, reasons, err := certs.EnsureMaterial(current, o.materialPolicy(), time.Now())
	if err != nil {
		return err
	}
	// The CA first: a run that stops between the two writes has lost nothing.
	caData := map[string][]byte{certs.KeyCACert: want[certs.KeyCACert], certs.KeyCAKey: want[certs.KeyCAKey]}
	if err := o.writeSecret(ctx, secrets, caCurrent, o.caSecret, corev1.SecretTypeOpaque, caData, nil, reasons, out); err != nil {
		return err
	}
	tlsData := map[string][]byte{certs.KeyTLSCert: want[certs.KeyTLSCert], certs.KeyTLSKey: want[certs.KeyTLSKey], certs.KeyCACert: want[certs.KeyCACert]}
	if err := o.writeSecret(ctx, secrets, tlsCurrent, o.secret, corev1.SecretTypeTLS, tlsData, []string{certs.KeyCAKey}, reasons, out); err != nil {
		return err
	}

	err = certs.SetCABundle(ctx, client, certs.WebhookConfigurations{Mutating: o.mutatingWebhook, Validating: o.validatingWebhook}, want[certs.KeyCACert], out)
	var missing *certs.ConfigurationNotFoundError
	if errors.As(err, &missing) {
		flagName := "--mutating-webhook"
		if missing.Kind == "ValidatingWebhookConfiguration" {
			flagName = "--validating-webhook"
		}
		return fmt.Errorf("%w: apply the manifests first (kubectl apply -k deploy/overlays/self-signed), or pass %s with its name, or %s='' to skip it", err, flagName, flagName)
	}
	return err
}

// readSecret returns the Secret name, nil when there is none, or an error when it is
// not one certs may own.
func (o *certsOptions) readSecret(ctx context.Context, secrets corev1client.SecretInterface, name string, typ corev1.SecretType, flagName string) (*corev1.Secret, error) {
	ref := o.namespace + "/" + name
	current, err := secrets.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("could not read Secret %s: %w", ref, err)
	case current.Annotations[certManagerCertificateAnnotation] != "":
		// Two owners would replace each other's CA and break caBundle in turn.
		return nil, fmt.Errorf("the Secret %s is managed by cert-manager (Certificate %s); leave it to cert-manager (deploy/overlays/cert-manager) or pass another %s", ref, current.Annotations[certManagerCertificateAnnotation], flagName)
	case current.Type != typ:
		return nil, fmt.Errorf("the Secret %s has type %s, not %s; delete it or pass another %s", ref, current.Type, typ, flagName)
	}
	return current, nil
}

// writeSecret creates the Secret name with data, or updates current where its data
// differs from data or holds one of the drop keys; it says which it did and why.
func (o *certsOptions) writeSecret(ctx context.Context, secrets corev1client.SecretInterface, current *corev1.Secret,
	name string, typ corev1.SecretType, data map[string][]byte, drop []string, reasons []string, out io.Writer) error {
	ref := o.namespace + "/" + name
	if current == nil {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      name,
				Namespace: o.namespace,
				Labels:    map[string]string{"app.kubernetes.io/name": "sysctl-placement", "app.kubernetes.io/component": "certs"},
			},
			Type: typ,
			Data: data,
		}
		if _, err := secrets.Create(ctx, secret, metav1.CreateOptions{FieldManager: "sysctl-placement-certs"}); err != nil {
			return fmt.Errorf("could not create Secret %s: %w%s", ref, err, retryHint(err))
		}
		_, err := fmt.Fprintf(out, "Secret %s created: %s\n", ref, strings.Join(o.orMoved(reasons), "; "))
		return err
	}
	updated := current.DeepCopy()
	if updated.Data == nil {
		updated.Data = map[string][]byte{}
	}
	maps.Copy(updated.Data, data)
	for _, k := range drop {
		delete(updated.Data, k)
	}
	if maps.EqualFunc(updated.Data, current.Data, bytes.Equal) {
		_, err := fmt.Fprintf(out, "Secret %s is up to date\n", ref)
		return err
	}
	if _, err := secrets.Update(ctx, updated, metav1.UpdateOptions{FieldManager: "sysctl-placement-certs"}); err != nil {
		return fmt.Errorf("could not update Secret %s: %w%s", ref, err, retryHint(err))
	}
	_, err := fmt.Fprintf(out, "Secret %s updated: %s\n", ref, strings.Join(o.orMoved(reasons), "; "))
	return err
}

// orMoved is reasons, or, when the material itself was good, the one other reason to
// write: the CA moving out of the Secret the webhook mounts (a Secret written before
// the CA had its own).
func (o *certsOptions) orMoved(reasons []string) []string {
	if len(reasons) > 0 {
		return reasons
	}
	return []string{fmt.Sprintf("the CA moves into Secret %s, out of %s, which the webhook mounts", o.caSecret, o.secret)}
}

// retryHint tells the user what to do about errors that a second run fixes.
func retryHint(err error) string {
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return " (it changed while certs ran, perhaps another run; run certs again)"
	}
	return ""
}

// materialPolicy is the certificate policy the flags ask for.
func (o *certsOptions) materialPolicy() certs.MaterialPolicy {
	return certs.MaterialPolicy{
		Service: o.service, Namespace: o.namespace, ExtraDNS: o.extraDNS, ExtraIPs: o.extraIPs,
		CACommonName: caCommonName, Validity: o.validity, CAValidity: o.caValidity, RenewBefore: o.renewBefore,
	}
}

// ensureDir is ensureCluster for --write-dir: the same material in files, and no
// caBundle (point a local client at ca.crt instead).
func (o *certsOptions) ensureDir(out io.Writer) error {
	current := map[string][]byte{}
	for _, key := range []string{certs.KeyCACert, certs.KeyCAKey, certs.KeyTLSCert, certs.KeyTLSKey} {
		data, err := os.ReadFile(filepath.Join(o.writeDir, key))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("could not read %s: %w; fix its permissions or pass another --write-dir", filepath.Join(o.writeDir, key), err)
		default:
			current[key] = data
		}
	}
	want, reasons, err := certs.EnsureMaterial(current, o.materialPolicy(), time.Now())
	if err != nil {
		return err
	}
	if len(reasons) == 0 {
		_, err := fmt.Fprintf(out, "%s is up to date\n", o.writeDir)
		return err
	}
	if err := os.MkdirAll(o.writeDir, 0o700); err != nil {
		return fmt.Errorf("could not create --write-dir: %w", err)
	}
	// Keys last: a reader that sees the new certificate with the old key refuses the
	// pair and keeps the old one (certs.Reloader does) until the key follows.
	for _, f := range []struct {
		key  string
		mode os.FileMode
	}{{certs.KeyCACert, 0o644}, {certs.KeyTLSCert, 0o644}, {certs.KeyCAKey, 0o600}, {certs.KeyTLSKey, 0o600}} {
		if bytes.Equal(current[f.key], want[f.key]) {
			continue
		}
		if err := writeFileAtomically(filepath.Join(o.writeDir, f.key), want[f.key], f.mode); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(out, "%s updated: %s\n", o.writeDir, strings.Join(reasons, "; "))
	return err
}

// writeFileAtomically replaces path with data in one rename, so a reader never sees
// a half-written PEM file.
func writeFileAtomically(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename; here when a step failed
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close() // the failed step's error is the one to report
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close() // the failed step's error is the one to report
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("could not write %s: %w", path, err)
	}
	return nil
}
