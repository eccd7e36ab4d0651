package policysync

import (
	"context"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
)

// object is one rendered object, as the client applies it.
type object struct {
	kind, name string
	value      any
	// patch applies data and returns the generation; get returns the object's metadata
	// and, for a ValidatingAdmissionPolicy, its status; remove deletes it.
	patch  func(ctx context.Context, data []byte) (int64, error)
	get    func(ctx context.Context) (metav1.Object, *admissionregistrationv1.ValidatingAdmissionPolicyStatus, error)
	remove func(ctx context.Context, opts metav1.DeleteOptions) error
}

func (o *object) key() string { return o.kind + "/" + o.name }

func applyOptions() metav1.PatchOptions {
	// Force: the policies are this backend's; a conflicting manager (a kubectl edit)
	// loses the fields this one writes, and keeps any other.
	return metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)}
}

// typedClient is what client-go's typed client of each policy kind offers.
type typedClient[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*T, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// newObject is o as applied with c; status returns a ValidatingAdmissionPolicy's
// status (nil for the other kinds).
func newObject[T any, PT interface {
	*T
	metav1.Object
}](kind string, c typedClient[T], o PT, status func(PT) *admissionregistrationv1.ValidatingAdmissionPolicyStatus) object {
	name := o.GetName()
	return object{kind: kind, name: name, value: o,
		patch: func(ctx context.Context, data []byte) (int64, error) {
			got, err := c.Patch(ctx, name, types.ApplyPatchType, data, applyOptions())
			if err != nil {
				return 0, err
			}
			return PT(got).GetGeneration(), nil
		},
		get: func(ctx context.Context) (metav1.Object, *admissionregistrationv1.ValidatingAdmissionPolicyStatus, error) {
			got, err := c.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, nil, err
			}
			return PT(got), status(got), nil
		},
		remove: func(ctx context.Context, opts metav1.DeleteOptions) error { return c.Delete(ctx, name, opts) },
	}
}

func noStatus[PT any](PT) *admissionregistrationv1.ValidatingAdmissionPolicyStatus { return nil }

// objects are the rendering's objects in apply order (a binding after its policy).
func (s *Syncer) objects(o *policy.Objects) []object { return objectsOf(s.cfg.Client, o) }

// deleteOrder are the objects the backend applies, by name only, in the order to
// delete them in: each binding before its policy, so no binding is ever left
// pointing at a policy already gone.
func deleteOrder(client kubernetes.Interface) []object {
	objs := objectsOf(client, &policy.Objects{
		Mutating:          &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policy.Name}},
		MutatingBinding:   &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.Name}},
		Validating:        &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policy.Name}},
		ValidatingBinding: &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.Name}},
		Warnings:          &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: policy.NameWarnings}},
		WarningsBinding:   &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.NameWarnings}},
	})
	slices.Reverse(objs)
	return objs
}

// objectsOf are o's objects in apply order, as client applies them.
func objectsOf(client kubernetes.Interface, o *policy.Objects) []object {
	a := client.AdmissionregistrationV1()
	vapStatus := func(p *admissionregistrationv1.ValidatingAdmissionPolicy) *admissionregistrationv1.ValidatingAdmissionPolicyStatus {
		return &p.Status
	}
	return []object{
		newObject("MutatingAdmissionPolicy", a.MutatingAdmissionPolicies(), o.Mutating, noStatus),
		newObject("MutatingAdmissionPolicyBinding", a.MutatingAdmissionPolicyBindings(), o.MutatingBinding, noStatus),
		newObject("ValidatingAdmissionPolicy", a.ValidatingAdmissionPolicies(), o.Validating, vapStatus),
		newObject("ValidatingAdmissionPolicyBinding", a.ValidatingAdmissionPolicyBindings(), o.ValidatingBinding, noStatus),
		newObject("ValidatingAdmissionPolicy", a.ValidatingAdmissionPolicies(), o.Warnings, vapStatus),
		newObject("ValidatingAdmissionPolicyBinding", a.ValidatingAdmissionPolicyBindings(), o.WarningsBinding, noStatus),
	}
}
