package doctor

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

var chart = Options{MutatingWebhook: "sysctl-placement", ValidatingWebhook: "sysctl-placement", Sysctl: corev1.Sysctl{Name: "kernel.msgmax", Value: "65536"}}

// optIn is the shipped namespaceSelector: opted in, and not the webhook's own namespace.
var optIn = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
	{Key: "sysctl-placement.io/enabled", Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}},
	{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"sysctl-placement", "kube-system"}},
}}

func configurations(caBundle []byte) []runtime.Object {
	podRules := []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: caBundle}
	return []runtime.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement"}, Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "pods.sysctl-placement.io", ClientConfig: cc, Rules: podRules, NamespaceSelector: optIn}}},
		&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "sysctl-placement"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "pods.sysctl-placement.io", ClientConfig: cc, Rules: podRules, NamespaceSelector: optIn}}},
	}
}

// cluster is a fake API server that names generated namespaces and answers the pod's
// dry-run create with answer.
func cluster(t *testing.T, objects []runtime.Object, answer func(*corev1.Pod) (*corev1.Pod, error)) (*fake.Clientset, *[]k8stesting.CreateAction) {
	client := fake.NewClientset(objects...)
	var creates []k8stesting.CreateAction
	client.PrependReactor("create", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ns := a.(k8stesting.CreateAction).GetObject().(*corev1.Namespace)
		if ns.Name == "" {
			ns.Name = ns.GenerateName + "x1y2z"
		}
		creates = append(creates, a.(k8stesting.CreateAction))
		return false, nil, nil
	})
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		creates = append(creates, a.(k8stesting.CreateAction))
		p, err := answer(a.(k8stesting.CreateAction).GetObject().(*corev1.Pod).DeepCopy())
		return true, p, err
	})
	return client, &creates
}

func placed(p *corev1.Pod) (*corev1.Pod, error) {
	p.Labels = map[string]string{scheduling.LabelPlaced: "true"}
	p.Annotations = map[string]string{scheduling.AnnotationPlacement: "pool ipc"}
	p.Spec.NodeSelector = map[string]string{"sysctl-placement.io/pool": "ipc"}
	return p, nil
}

func TestDoctorNamespaces(t *testing.T) {
	t.Run("doctor passes when a dry-run pod in an opted-in scratch namespace is placed", func(t *testing.T) {
		client, creates := cluster(t, configurations([]byte("ca")), placed)
		var out bytes.Buffer
		if err := Run(context.Background(), client, chart, &out); err != nil {
			t.Fatalf("Run: %v\n%s", err, out.String())
		}
		if len(*creates) != 2 {
			t.Fatalf("creates %d, want the namespace and the pod", len(*creates))
		}
		ns := (*creates)[0].GetObject().(*corev1.Namespace)
		if sel, _ := metav1.LabelSelectorAsSelector(optIn); !sel.Matches(labels.Set(ns.Labels)) {
			t.Errorf("scratch namespace labels %v do not opt in (%s)", ns.Labels, sel)
		}
		pod := (*creates)[1]
		if opts := pod.(k8stesting.CreateActionImpl).CreateOptions; len(opts.DryRun) != 1 || opts.DryRun[0] != metav1.DryRunAll {
			t.Errorf("pod created with dryRun %v, want [All]: the check must store nothing", opts.DryRun)
		}
		if got := pod.GetObject().(*corev1.Pod).Spec.SecurityContext.Sysctls; len(got) != 1 || got[0] != chart.Sysctl {
			t.Errorf("test pod sysctls %v, want [%v]", got, chart.Sysctl)
		}
		if _, err := client.CoreV1().Namespaces().Get(context.Background(), ns.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("scratch namespace %s still there after the check (err %v)", ns.Name, err)
		}
		if !strings.Contains(out.String(), "placed: a pod asking for kernel.msgmax=65536 gets pool ipc") {
			t.Errorf("output does not say where the pod went:\n%s", out.String())
		}
	})

	// The chart's helm test names a namespace it made to opt in: the check then needs no
	// right on namespaces, only create on pods there.
	t.Run("doctor tests in the namespace it is given without creating one", func(t *testing.T) {
		client, creates := cluster(t, configurations([]byte("ca")), placed)
		o := chart
		o.TestNamespace = "sysctl-placement-doctor"
		if err := Run(context.Background(), client, o, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		if len(*creates) != 1 || (*creates)[0].GetResource().Resource != "pods" || (*creates)[0].GetNamespace() != o.TestNamespace {
			t.Errorf("creates %v, want only the pod, in %s", *creates, o.TestNamespace)
		}
		for _, a := range client.Actions() {
			if a.GetResource().Resource == "namespaces" {
				t.Errorf("%s namespaces: the check must not touch namespaces when given one", a.GetVerb())
			}
		}
	})
}

func TestDoctorNamesTheCause(t *testing.T) {
	for _, tc := range []struct {
		name    string
		objects []runtime.Object
		answer  func(*corev1.Pod) (*corev1.Pod, error)
		want    Cause
	}{
		{"not installed", nil, placed, CauseNotInstalled},
		{"caBundle not set yet", configurations(nil), placed, CauseCABundle},
		{"caBundle of another CA", configurations([]byte("ca")), refusal(`Internal error occurred: failed calling webhook "pods.sysctl-placement.io": failed to call webhook: Post "https://sysctl-placement.sysctl-placement.svc:443/mutate?timeout=10s": tls: failed to verify certificate: x509: certificate signed by unknown authority`), CauseCABundle},
		{"no ready pod", configurations([]byte("ca")), refusal(`Internal error occurred: failed calling webhook "pods.sysctl-placement.io": failed to call webhook: Post "https://sysctl-placement.sysctl-placement.svc:443/mutate?timeout=10s": no endpoints available for service "sysctl-placement"`), CauseNetwork},
		{"firewall", configurations([]byte("ca")), refusal(`Internal error occurred: failed calling webhook "pods.sysctl-placement.io": failed to call webhook: Post "https://10.0.0.1:443/mutate?timeout=10s": context deadline exceeded`), CauseNetwork},
		{"Pod Security", configurations([]byte("ca")), refusal(`pods "sysctl-placement-doctor" is forbidden: violates PodSecurity "baseline:latest": forbidden sysctls (kernel.msgmax)`), CausePodSecurity},
		{"no pool", configurations([]byte("ca")), refusal(`admission webhook "pods.sysctl-placement.io" denied the request: no node pool allows kernel.msgmax`), CauseDenied},
		{"not called", configurations([]byte("ca")), func(p *corev1.Pod) (*corev1.Pod, error) { return p, nil }, CauseNotCalled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, _ := cluster(t, tc.objects, tc.answer)
			err := Run(context.Background(), client, chart, &bytes.Buffer{})
			var f *Failure
			if !errors.As(err, &f) || f.Cause != tc.want {
				t.Fatalf("Run = %v, want a failure with cause %q", err, tc.want)
			}
		})
	}
}

func refusal(msg string) func(*corev1.Pod) (*corev1.Pod, error) {
	return func(*corev1.Pod) (*corev1.Pod, error) {
		return nil, apierrors.NewInternalError(errors.New(msg))
	}
}

func TestMatchingLabelsSatisfyTheSelector(t *testing.T) {
	for _, tc := range []struct {
		name string
		sel  *metav1.LabelSelector
		ok   bool
	}{
		{"nil", nil, true},
		{"matchLabels", &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}, true},
		{"In, NotIn, Exists, DoesNotExist", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: metav1.LabelSelectorOpIn, Values: []string{"x", "y"}},
			{Key: "b", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"z"}},
			{Key: "c", Operator: metav1.LabelSelectorOpExists},
			{Key: "d", Operator: metav1.LabelSelectorOpDoesNotExist},
		}}, true},
		{"contradiction", &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}, MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: metav1.LabelSelectorOpDoesNotExist}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := matchingLabels(tc.sel)
			if (err == nil) != tc.ok {
				t.Fatalf("matchingLabels = %v, %v; want ok %v", set, err, tc.ok)
			}
			if tc.ok && tc.sel != nil {
				if sel, _ := metav1.LabelSelectorAsSelector(tc.sel); !sel.Matches(labels.Set(set)) {
					t.Errorf("%v does not match %s", set, sel)
				}
			}
		})
	}
}

func TestClassifyKeepsTheAPIServersReason(t *testing.T) {
	err := Classify(apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("exceeded quota")))
	if !strings.Contains(err.Error(), "Forbidden") || !strings.Contains(err.Error(), "exceeded quota") {
		t.Errorf("Classify = %v, want the reason and the message", err)
	}
}
