// Package doctor checks an installed sysctl-placement the way a user would meet it:
// the two webhook configurations exist with a caBundle, and a pod asking for an unsafe
// sysctl, created with dryRun=All in a scratch namespace that opts in, comes back
// placed. When it does not, the check names the cause a cluster admin can act on: the
// caBundle (the API server does not trust the serving certificate), the network (the
// API server cannot reach the webhook's pods: not ready, a NetworkPolicy or a
// firewall), Pod Security, or the webhook's own answer (no pool allows the sysctl).
// `sysctl-placement doctor` runs it, and the Helm chart's `helm test` runs that.
package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Options say what to check.
type Options struct {
	// MutatingWebhook and ValidatingWebhook name the two configurations.
	MutatingWebhook, ValidatingWebhook string
	// Sysctl is the unsafe sysctl the test pod asks for.
	Sysctl corev1.Sysctl
	// TestNamespace, when set, is a namespace that opts in to test in; otherwise a
	// scratch namespace is created, and deleted afterwards unless KeepNamespace.
	TestNamespace string
	KeepNamespace bool
}

// Cause is what went wrong, in the words of what to fix.
type Cause string

const (
	CauseNotInstalled Cause = "not installed"
	CauseCABundle     Cause = "caBundle"
	CauseNetwork      Cause = "network"
	CausePodSecurity  Cause = "Pod Security"
	CauseDenied       Cause = "denied by the webhook"
	CauseNotCalled    Cause = "webhook not called"
	CauseOther        Cause = "other"
)

// Failure is a failed check: its cause and what to do.
type Failure struct {
	Cause  Cause
	Detail string
}

func (f *Failure) Error() string { return fmt.Sprintf("%s: %s", f.Cause, f.Detail) }

// scratchPrefix is the generateName of the scratch namespace.
const scratchPrefix = "sysctl-placement-doctor-"

// Run checks the installation through client and writes a line per step to out. It
// returns a *Failure when the pod is not placed.
func Run(ctx context.Context, client kubernetes.Interface, o Options, out io.Writer) error {
	api := client.AdmissionregistrationV1()
	mutating, err := api.MutatingWebhookConfigurations().Get(ctx, o.MutatingWebhook, metav1.GetOptions{})
	if err != nil {
		return configurationError("MutatingWebhookConfiguration", o.MutatingWebhook, err)
	}
	validating, err := api.ValidatingWebhookConfigurations().Get(ctx, o.ValidatingWebhook, metav1.GetOptions{})
	if err != nil {
		return configurationError("ValidatingWebhookConfiguration", o.ValidatingWebhook, err)
	}
	pods, err := podsEntry(mutating)
	if err != nil {
		return err
	}
	if err := checkCABundles(mutating, validating, out); err != nil {
		return err
	}
	nsLabels, err := matchingLabels(pods.NamespaceSelector)
	if err != nil {
		return &Failure{CauseOther, fmt.Sprintf("no namespace can opt in: the webhook %q's namespaceSelector: %v", pods.Name, err)}
	}
	podLabels, err := matchingLabels(pods.ObjectSelector)
	if err != nil {
		return &Failure{CauseOther, fmt.Sprintf("no pod is ever sent: the webhook %q's objectSelector: %v", pods.Name, err)}
	}
	namespace := o.TestNamespace
	if namespace == "" {
		// The scratch namespace admits any pod as far as Pod Security goes: the check
		// is about the webhook. A cluster policy that still refuses it is reported.
		nsLabels["pod-security.kubernetes.io/enforce"] = "privileged"
		ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: scratchPrefix, Labels: nsLabels}}, metav1.CreateOptions{})
		if err != nil {
			return &Failure{CauseOther, fmt.Sprintf("could not create a scratch namespace to test in (or name one that opts in with --test-namespace): %v", err)}
		}
		namespace = ns.Name
		if _, err := fmt.Fprintf(out, "scratch namespace %s, labelled to opt in: %v\n", namespace, nsLabels); err != nil {
			return err
		}
		if !o.KeepNamespace {
			// Deleted on a context of its own: the check's may be done.
			defer deleteScratch(context.WithoutCancel(ctx), client, namespace, out)
		}
	}
	pod := testPod(namespace, podLabels, o.Sysctl)
	created, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return Classify(err)
	}
	return reportPlaced(created, o.Sysctl, out)
}

// deleteScratch deletes the scratch namespace, saying so when it cannot.
func deleteScratch(ctx context.Context, client kubernetes.Interface, name string, out io.Writer) {
	if err := client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		_, _ = fmt.Fprintf(out, "could not delete the scratch namespace %s: %v\n", name, err) // a warning: nothing more to do if it cannot be written
	}
}

// configurationError says that a configuration is missing, or could not be read.
func configurationError(kind, name string, err error) error {
	if apierrors.IsNotFound(err) {
		return &Failure{CauseNotInstalled, fmt.Sprintf("the %s %s does not exist: install sysctl-placement, or name its configurations with --mutating-webhook and --validating-webhook", kind, name)}
	}
	return &Failure{CauseOther, fmt.Sprintf("could not read the %s %s: %v", kind, name, err)}
}

// podsEntry is the mutating configuration's entry for pods.
func podsEntry(m *admissionregistrationv1.MutatingWebhookConfiguration) (*admissionregistrationv1.MutatingWebhook, error) {
	for i, w := range m.Webhooks {
		for _, r := range w.Rules {
			for _, res := range r.Resources {
				if res == "pods" || res == "*" {
					return &m.Webhooks[i], nil
				}
			}
		}
	}
	return nil, &Failure{CauseNotInstalled, fmt.Sprintf("the MutatingWebhookConfiguration %s has no webhook for pods: reinstall sysctl-placement", m.Name)}
}

// checkCABundles fails when a webhook of either configuration has no caBundle: the
// certificates Job has not patched it yet.
func checkCABundles(m *admissionregistrationv1.MutatingWebhookConfiguration, v *admissionregistrationv1.ValidatingWebhookConfiguration, out io.Writer) error {
	var empty []string
	for _, w := range m.Webhooks {
		if len(w.ClientConfig.CABundle) == 0 {
			empty = append(empty, "mutating "+w.Name)
		}
	}
	for _, w := range v.Webhooks {
		if len(w.ClientConfig.CABundle) == 0 {
			empty = append(empty, "validating "+w.Name)
		}
	}
	if len(empty) > 0 {
		return &Failure{CauseCABundle, fmt.Sprintf("no caBundle on %s: the certificates have not been set up yet (self-signed: the <release>-certs Job's logs; cert-manager: its CA injector)", strings.Join(empty, ", "))}
	}
	_, err := fmt.Fprintf(out, "MutatingWebhookConfiguration %s and ValidatingWebhookConfiguration %s: %d and %d webhooks, each with a caBundle\n", m.Name, v.Name, len(m.Webhooks), len(v.Webhooks))
	return err
}

// testPod asks for the sysctl and nothing else; created with dryRun=All it is never
// stored, scheduled or pulled.
func testPod(namespace string, labels map[string]string, sysctl corev1.Sysctl) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement-doctor", Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{sysctl}},
			Containers:      []corev1.Container{{Name: "pause", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
}

// reportPlaced passes when the webhook placed the pod, and says where.
func reportPlaced(p *corev1.Pod, sysctl corev1.Sysctl, out io.Writer) error {
	placement := p.Annotations[scheduling.AnnotationPlacement]
	if p.Labels[scheduling.LabelPlaced] != "true" || placement == "" {
		return &Failure{CauseNotCalled, fmt.Sprintf("a pod asking for %s was admitted unchanged: the webhook was not called for it (check the configurations' namespaceSelector, objectSelector and matchConditions) or it needs no pool", sysctl.Name)}
	}
	_, err := fmt.Fprintf(out, "placed: a pod asking for %s=%s gets %s\n", sysctl.Name, sysctl.Value, placement)
	// The pod as the API server admitted it, in the words plan and the Events use.
	if spec := (scheduling.Changes{NodeSelector: p.Spec.NodeSelector, Tolerations: p.Spec.Tolerations}); err == nil && !spec.IsEmpty() {
		_, err = fmt.Fprintf(out, "  %s\n", spec)
	}
	return err
}

// Classify turns the API server's refusal of the test pod into the cause to fix. The
// API server reports a webhook it could not call in the error's text, so the text is
// what tells a TLS failure from an unreachable Service.
func Classify(err error) error {
	msg := err.Error()
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(msg, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("x509:", "tls: failed to verify", "certificate signed by unknown authority", "certificate is valid for"):
		return &Failure{CauseCABundle, "the API server does not trust the webhook's serving certificate: the configurations' caBundle does not match the CA that signed it, or the certificate does not name the Service (self-signed: rerun the <release>-certs Job; cert-manager: check the CA injector). " + msg}
	case has("connection refused", "no endpoints available", "i/o timeout", "context deadline exceeded", "no route to host", "no such host", "connection reset", "service unavailable", "Client.Timeout"):
		return &Failure{CauseNetwork, "the API server cannot reach the webhook: its pods are not Ready, or a NetworkPolicy or a firewall between the control plane and the pods' port blocks the call. " + msg}
	case has("violates PodSecurity"):
		return &Failure{CausePodSecurity, "Pod Security refused the pod before placement mattered: namespaces that opt in must allow unsafe sysctls (pod-security.kubernetes.io/enforce: privileged). " + msg}
	case has("denied the request"):
		return &Failure{CauseDenied, "the webhook answered and refused the pod; its reason: " + msg}
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return &Failure{CauseOther, fmt.Sprintf("the API server refused the test pod (%s): %s", status.Status().Reason, msg)}
	}
	return &Failure{CauseOther, msg}
}

// matchingLabels is a label set the selector matches: what the scratch namespace (or
// the test pod) must carry to be sent to the webhook. A nil selector matches anything.
func matchingLabels(sel *metav1.LabelSelector) (map[string]string, error) {
	set := map[string]string{}
	if sel == nil {
		return set, nil
	}
	for k, v := range sel.MatchLabels {
		set[k] = v
	}
	for _, r := range sel.MatchExpressions {
		_, has := set[r.Key]
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			if !has && len(r.Values) > 0 {
				set[r.Key] = r.Values[0]
			}
		case metav1.LabelSelectorOpExists:
			if !has {
				set[r.Key] = "true"
			}
		}
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, err
	}
	if !selector.Matches(labels.Set(set)) {
		return nil, fmt.Errorf("found no labels that match %s", selector)
	}
	return set, nil
}
