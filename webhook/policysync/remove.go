package policysync

// Remove is the uninstall's step for the policy backend: the policies outlive serve
// (that is what they are for), so once serve is gone for good something must delete
// them, or the API server keeps placing pods by a configuration nothing maintains.

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
)

// Outcome is what Remove did with one object.
type Outcome string

// The outcomes of Remove.
const (
	// Deleted: the object carried policy.Labels and is deleted.
	Deleted Outcome = "deleted"
	// Gone: there was no such object (or the API server serves no such kind).
	Gone Outcome = "already gone"
	// NotOurs: an object of that name without policy.Labels, someone else's: kept.
	NotOurs Outcome = "kept: not labelled as the sync labels its objects (someone else's)"
)

// Removal is one object Remove looked at.
type Removal struct {
	Kind, Name string
	Outcome    Outcome
}

func (r Removal) String() string { return r.Kind + " " + r.Name + ": " + string(r.Outcome) }

// Remove deletes the admission policies and bindings the sync applies, bindings
// first: each is read by name and deleted only if it carries policy.Labels, with its
// UID as a precondition so that an object replaced in between is not deleted
// unread. Reading and deleting by name is what lets RBAC restrict both to the six
// objects (a delete by label selector, deletecollection, cannot be restricted by
// name). It goes through all six even after a failure, and returns the failures.
func Remove(ctx context.Context, client kubernetes.Interface) ([]Removal, error) {
	want := labels.SelectorFromSet(policy.Labels())
	var out []Removal
	var errs []error
	for _, obj := range deleteOrder(client) {
		r := Removal{Kind: obj.kind, Name: obj.name}
		found, _, err := obj.get(ctx)
		switch {
		case apierrors.IsNotFound(err):
			r.Outcome = Gone
		case err != nil:
			errs = append(errs, fmt.Errorf("could not read the %s %s: %w", obj.kind, obj.name, err))
			continue
		case !want.Matches(labels.Set(found.GetLabels())):
			r.Outcome = NotOurs
		default:
			uid := found.GetUID()
			err := obj.remove(ctx, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			switch {
			case apierrors.IsNotFound(err):
				r.Outcome = Gone
			case err != nil:
				errs = append(errs, fmt.Errorf("could not delete the %s %s: %w", obj.kind, obj.name, err))
				continue
			default:
				r.Outcome = Deleted
			}
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
