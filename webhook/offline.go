package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/slok/kubewebhook/v2/pkg/model"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
)

// Offline runs both webhooks on manifests without a cluster, the way the API server
// runs them on a dry-run CREATE: the mutating webhook, its patch applied, then the
// validating webhook on the result. `sysctl-placement plan` is built on it, so it
// answers exactly what admission would, and only this package knows kubewebhook.
type Offline struct {
	mutator   *Mutator
	validator *Validator
	namespace string
}

// OfflineConfig configures Offline.
type OfflineConfig struct {
	// Config is the placement configuration (required).
	Config *scheduling.Compiled
	// Namespace is the namespace every object is admitted to, with its labels and
	// annotations; an empty name is "default".
	Namespace scheduling.Namespace
}

func (c *OfflineConfig) defaults() error {
	if c.Config == nil {
		return errors.New("a placement configuration is required")
	}
	if c.Namespace.Name == "" {
		c.Namespace.Name = "default"
	}
	return nil
}

// OfflineResult is what admission would do to one object.
type OfflineResult struct {
	// Allowed is the validating webhook's verdict (or the mutating one's, which denies
	// what Pod Security would refuse); Message says why it denied.
	Allowed bool
	Message string
	// Warnings are the mutating webhook's warnings.
	Warnings []string
	// Patch is the mutating webhook's JSON patch: "[]" when nothing changes.
	Patch []byte
	// Object is the object with the patch applied: what the validating webhook judged.
	Object []byte
}

// NewOffline builds both webhooks on cfg.
func NewOffline(cfg OfflineConfig) (*Offline, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid offline configuration: %w", err)
	}
	whCfg := Config{
		Config:     config.NewStore(cfg.Config),
		Namespaces: namespaces.Static{cfg.Namespace.Name: cfg.Namespace},
	}
	m, err := NewMutator(whCfg)
	if err != nil {
		return nil, err
	}
	v, err := NewValidator(whCfg)
	if err != nil {
		return nil, err
	}
	return &Offline{mutator: m, validator: v, namespace: cfg.Namespace.Name}, nil
}

// Admit runs both webhooks on one object (JSON with apiVersion and kind).
func (o *Offline) Admit(object []byte) (OfflineResult, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(object, &tm); err != nil {
		return OfflineResult{}, fmt.Errorf("could not decode the object: %w", err)
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return OfflineResult{}, errors.New("the object has no apiVersion or kind")
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		return OfflineResult{}, fmt.Errorf("the object's apiVersion: %w", err)
	}
	review := model.AdmissionReview{
		ID:           "plan",
		Namespace:    o.namespace,
		Operation:    model.OperationCreate,
		Version:      model.AdmissionReviewVersionV1,
		RequestGVK:   &metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: tm.Kind},
		NewObjectRaw: object,
		DryRun:       true,
	}
	ctx := context.Background()
	resp, err := o.mutator.Review(ctx, review)
	if err != nil {
		return OfflineResult{}, err
	}
	if denied, ok := resp.(*model.ValidatingAdmissionResponse); ok && !denied.Allowed {
		// The mutating webhook denies what Pod Security would refuse and pods beyond
		// the limits (denyAtMutation).
		return OfflineResult{Message: denied.Message, Warnings: denied.Warnings, Patch: emptyPatch, Object: object}, nil
	}
	mutated, ok := resp.(*model.MutatingAdmissionResponse)
	if !ok {
		return OfflineResult{}, fmt.Errorf("unexpected mutating response %T", resp)
	}
	res := OfflineResult{Warnings: mutated.Warnings, Patch: emptyPatch, Object: object}
	if len(mutated.JSONPatchPatch) > 0 {
		patch, err := jsonpatch.DecodePatch(mutated.JSONPatchPatch)
		if err != nil {
			return OfflineResult{}, fmt.Errorf("could not read the webhook's patch: %w", err)
		}
		if res.Object, err = patch.Apply(object); err != nil {
			return OfflineResult{}, fmt.Errorf("could not apply the webhook's patch: %w", err)
		}
		res.Patch = mutated.JSONPatchPatch
	}
	// The validating webhook sees the object after every mutation, as in the API server.
	review.NewObjectRaw = res.Object
	vresp, err := o.validator.Review(ctx, review)
	if err != nil {
		return OfflineResult{}, err
	}
	validated, ok := vresp.(*model.ValidatingAdmissionResponse)
	if !ok {
		return OfflineResult{}, fmt.Errorf("unexpected validating response %T", vresp)
	}
	res.Allowed, res.Message = validated.Allowed, validated.Message
	return res, nil
}
