package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
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

	t.Run("admission-policies deletes the sync's policies, bindings first, and keeps others", func(t *testing.T) {
		ours := func(name string) metav1.ObjectMeta {
			return metav1.ObjectMeta{Name: name, Labels: policy.Labels()}
		}
		client := fake.NewClientset(
			&admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: ours(policy.Name)},
			&admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: ours(policy.Name)},
			&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: ours(policy.Name)},
			&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: ours(policy.Name)},
			&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: ours(policy.NameWarnings)},
			// Someone else's object of the sync's name, and another policy: both kept.
			&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.NameWarnings}},
			&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: "team-policy", Labels: policy.Labels()}},
		)
		o := uninstallCleanupOptions{namespace: "sysctl-placement", policies: true}
		var out bytes.Buffer
		if err := o.deleteLeftovers(context.Background(), client, &out); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		a := client.AdmissionregistrationV1()
		mutating, _ := a.MutatingAdmissionPolicies().List(ctx, metav1.ListOptions{})
		mapbs, _ := a.MutatingAdmissionPolicyBindings().List(ctx, metav1.ListOptions{})
		vaps, _ := a.ValidatingAdmissionPolicies().List(ctx, metav1.ListOptions{})
		vapbs, _ := a.ValidatingAdmissionPolicyBindings().List(ctx, metav1.ListOptions{})
		if len(mutating.Items)+len(mapbs.Items) != 0 || len(vaps.Items) != 1 || vaps.Items[0].Name != "team-policy" ||
			len(vapbs.Items) != 1 || vapbs.Items[0].Name != policy.NameWarnings {
			t.Errorf("left %d MAPs, %d MAP bindings, VAPs %v, VAP bindings %v; want only team-policy and the unlabelled binding",
				len(mutating.Items), len(mapbs.Items), vaps.Items, vapbs.Items)
		}
		var deleted []string
		for _, action := range client.Actions() {
			if d, ok := action.(clienttesting.DeleteAction); ok {
				deleted = append(deleted, d.GetResource().Resource+"/"+d.GetName())
			}
		}
		want := []string{
			"validatingadmissionpolicies/" + policy.NameWarnings,
			"validatingadmissionpolicybindings/" + policy.Name,
			"validatingadmissionpolicies/" + policy.Name,
			"mutatingadmissionpolicybindings/" + policy.Name,
			"mutatingadmissionpolicies/" + policy.Name,
		}
		if !slices.Equal(deleted, want) {
			t.Errorf("deleted %v, want %v (each binding before its policy)", deleted, want)
		}
		if strings.Count(out.String(), ": deleted\n") != 5 || !strings.Contains(out.String(), "ValidatingAdmissionPolicyBinding "+policy.NameWarnings+": kept") {
			t.Errorf("output %q, want five deletions and the unlabelled binding kept", out.String())
		}
		// A retried hook finds nothing of its own left and succeeds.
		out.Reset()
		if err := o.deleteLeftovers(ctx, client, &out); err != nil || strings.Count(out.String(), "already gone") != 5 {
			t.Errorf("second run: %v, output %q; want success with five already gone", err, out.String())
		}
	})

	t.Run("admission-policies goes on past a refused delete and reports it", func(t *testing.T) {
		client := fake.NewClientset(
			&admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policy.Name, Labels: policy.Labels()}},
			&admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.Name, Labels: policy.Labels()}},
		)
		client.PrependReactor("delete", "mutatingadmissionpolicybindings", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "admissionregistration.k8s.io", Resource: "mutatingadmissionpolicybindings"}, policy.Name, errors.New("RBAC"))
		})
		o := uninstallCleanupOptions{namespace: "sysctl-placement", policies: true}
		err := o.deleteLeftovers(context.Background(), client, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "MutatingAdmissionPolicyBinding "+policy.Name) {
			t.Errorf("err = %v, want the refused binding named", err)
		}
		if _, gerr := client.AdmissionregistrationV1().MutatingAdmissionPolicies().Get(context.Background(), policy.Name, metav1.GetOptions{}); !apierrors.IsNotFound(gerr) {
			t.Errorf("the policy after its binding's refused delete: %v, want it deleted all the same", gerr)
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
