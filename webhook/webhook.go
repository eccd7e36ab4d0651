// Package webhook adapts the placement engine (package scheduling) to Kubernetes
// admission through github.com/slok/kubewebhook/v2. It is the only package that knows
// kubewebhook: it decodes the admitted object, calls scheduling.Plan, and turns the
// decision into a JSON patch, warnings, an audit annotation or a denial.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	"github.com/slok/kubewebhook/v2/pkg/model"
	kwhwebhook "github.com/slok/kubewebhook/v2/pkg/webhook"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// Config holds what both webhooks need.
type Config struct {
	// Config is the placement configuration in force (required).
	Config config.Source
	// Namespaces gives namespace labels and annotations from memory (required).
	Namespaces namespaces.Source
	// Metrics counts decisions; nil counts nothing.
	Metrics *Metrics
	// Logger gets one line per admission; nil logs nothing.
	Logger logrus.FieldLogger
	// Workloads hears about denied controller-owned pods and changed workload
	// templates, for Events on the workload (see WorkloadObserver); nil tells no one.
	Workloads WorkloadObserver

	// quiet: no Logger was given, so the line per admission is not even built.
	quiet bool
}

func (c *Config) defaults() error {
	if c.Config == nil {
		return errors.New("a configuration source is required")
	}
	if c.Namespaces == nil {
		return errors.New("a namespace source is required")
	}
	if c.Logger == nil {
		c.quiet = true
		c.Logger = discardLogger()
	}
	return nil
}

// discardLogger is the logger of a component given none.
func discardLogger() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

// planner holds the steps both webhooks share: decode, look up the namespace, plan.
type planner struct {
	cfg Config
}

// plan decides for one admission review. A nil decision with a nil error means the
// object is not ours to judge (another kind, a delete); it is admitted unchanged.
func (p planner) plan(ctx context.Context, ar model.AdmissionReview) (*review.Object, *scheduling.Decision, error) {
	if ar.Operation != model.OperationCreate && ar.Operation != model.OperationUpdate {
		return nil, nil, nil
	}
	gvk := metav1.GroupVersionKind{}
	if ar.RequestGVK != nil {
		gvk = *ar.RequestGVK
	}
	obj, err := review.ObjectFrom(ctx, ar, gvk)
	if err != nil {
		var unhandled review.UnhandledKindError
		if errors.As(err, &unhandled) {
			p.cfg.Logger.WithFields(logrus.Fields{"uid": ar.ID, "namespace": ar.Namespace, "kind": unhandled.Kind}).Warn(err.Error())
			return nil, nil, nil
		}
		return nil, nil, err
	}
	// Pods are placed when they are created; their placement fields are immutable after.
	if !obj.Template && ar.Operation != model.OperationCreate {
		return nil, nil, nil
	}
	compiled := p.cfg.Config.Current()
	if compiled == nil {
		return nil, nil, errors.New("no valid placement configuration is loaded; fix the --config file")
	}
	ns, _ := p.cfg.Namespaces.Namespace(ar.Namespace)
	d := scheduling.Plan(scheduling.Input{Pod: obj.Pod, Namespace: ns, Config: compiled, Template: obj.Template})
	return &obj, &d, nil
}

func (p planner) log(kind string, ar model.AdmissionReview, obj *review.Object, d *scheduling.Decision) {
	if p.cfg.quiet {
		return
	}
	fields := logrus.Fields{
		"webhook":   kind,
		"uid":       ar.ID,
		"namespace": ar.Namespace,
		"dryRun":    ar.DryRun,
	}
	if obj != nil {
		fields["kind"] = obj.Kind
		fields["name"] = obj.Name
	}
	if d != nil {
		fields["outcome"] = d.Outcome
		fields["reason"] = d.Reason
		fields["allowed"] = d.Allowed
		if len(d.Audit.Pools) > 0 {
			fields["pools"] = d.Audit.Pools
		}
	}
	p.cfg.Logger.WithFields(fields).Info("admission reviewed")
}

// Mutator is the mutating webhook: it applies the decision as a JSON patch that touches
// only the paths the decision owns.
type Mutator struct {
	planner
}

// NewMutator builds the mutating webhook.
func NewMutator(cfg Config) (*Mutator, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid mutator configuration: %w", err)
	}
	return &Mutator{planner{cfg: cfg}}, nil
}

var _ kwhwebhook.Webhook = (*Mutator)(nil)

// ID implements kubewebhook's Webhook.
func (m *Mutator) ID() string { return "sysctl-placement-mutate" }

// Kind implements kubewebhook's Webhook.
func (m *Mutator) Kind() model.WebhookKind { return model.WebhookKindMutating }

// Review implements kubewebhook's Webhook.
func (m *Mutator) Review(ctx context.Context, ar model.AdmissionReview) (model.AdmissionResponse, error) {
	obj, d, err := m.plan(ctx, ar)
	if err != nil {
		// The mutating webhook cannot deny with a message; the validating webhook
		// denies the same object with this error. Admit unchanged and say so.
		m.cfg.Logger.WithFields(logrus.Fields{"uid": ar.ID, "namespace": ar.Namespace}).WithError(err).Error("could not plan placement")
		return &model.MutatingAdmissionResponse{JSONPatchPatch: emptyPatch, Warnings: []string{scheduling.WarningPrefix + "could not plan placement: " + scheduling.Truncate(err.Error(), 80)}}, nil
	}
	m.log("mutate", ar, obj, d)
	if d == nil {
		return &model.MutatingAdmissionResponse{JSONPatchPatch: emptyPatch}, nil
	}
	if denial := m.denyAtMutation(ar, obj, d); denial != nil {
		return denial, nil
	}
	patch, err := mutationPatch(obj, d)
	if err != nil {
		return nil, fmt.Errorf("could not plan placement: %w", err)
	}
	if !ar.DryRun {
		m.cfg.Metrics.observeMutation(d)
	}
	m.observeTemplateChange(ar, obj, d, patch)
	return &model.MutatingAdmissionResponse{JSONPatchPatch: patch, Warnings: d.Warnings}, nil
}

// denyAtMutation answers the decisions the mutating webhook denies itself with a
// denial: a pod beyond the limits (Outcome OverLimit), which must cost no further work
// or text on any path, and a pod whose namespace's enforced Pod Security level forbids
// its sysctls (Outcome Forbidden).
//
// Why the latter is denied here and not in the validating webhook: the API server
// runs its validating admission plugins, PodSecurity among them, before the validating
// webhooks, so such a pod never reaches /validate and the user would see only PSA's
// terse "forbidden sysctls". Mutating webhooks run before every validation.
// kubewebhook's mutating response has no way to deny, but its HTTP handler encodes a
// response by its type, so a ValidatingAdmissionResponse with Allowed false becomes an
// ordinary AdmissionResponse denial, which the API server honours from a mutating
// webhook too. It returns nil for every other decision.
func (m *Mutator) denyAtMutation(ar model.AdmissionReview, obj *review.Object, d *scheduling.Decision) model.AdmissionResponse {
	if d == nil || d.Outcome != scheduling.OutcomeForbidden && d.Outcome != scheduling.OutcomeOverLimit {
		return nil
	}
	if !ar.DryRun {
		m.cfg.Metrics.observeDenial(d)
	}
	m.observeDenial(ar, obj, d)
	return &model.ValidatingAdmissionResponse{Allowed: false, Message: d.Message, Warnings: d.Warnings}
}

// mutationPatch turns a decision into JSON patch operations on the admitted object.
func mutationPatch(obj *review.Object, d *scheduling.Decision) ([]byte, error) {
	var b patchBuilder
	b.addSpecChanges(obj.Paths, &obj.Pod.Spec, &d.Changes)
	if len(b.ops) > 0 && !obj.Template {
		audit, err := json.Marshal(d.Audit)
		if err != nil {
			return nil, fmt.Errorf("could not encode the audit record: %w", err)
		}
		if obj.NoMetadata {
			b.add(obj.Paths.Metadata, map[string]any{
				"annotations": map[string]string{scheduling.AnnotationPlacement: string(audit)},
				"labels":      map[string]string{scheduling.LabelPlaced: "true"},
			})
		} else {
			b.addMetadataEntry(obj.Paths.Metadata, "annotations", obj.Pod.Annotations, scheduling.AnnotationPlacement, string(audit))
			b.addMetadataEntry(obj.Paths.Metadata, "labels", obj.Pod.Labels, scheduling.LabelPlaced, "true")
		}
	}
	return b.marshal()
}

// Validator is the validating webhook: it judges the final object (after every
// mutation) and rejects what still cannot run, with the engine's explanation.
type Validator struct {
	planner
}

// NewValidator builds the validating webhook.
func NewValidator(cfg Config) (*Validator, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid validator configuration: %w", err)
	}
	return &Validator{planner{cfg: cfg}}, nil
}

var _ kwhwebhook.Webhook = (*Validator)(nil)

// ID implements kubewebhook's Webhook.
func (v *Validator) ID() string { return "sysctl-placement-validate" }

// Kind implements kubewebhook's Webhook.
func (v *Validator) Kind() model.WebhookKind { return model.WebhookKindValidating }

// Review implements kubewebhook's Webhook.
func (v *Validator) Review(ctx context.Context, ar model.AdmissionReview) (model.AdmissionResponse, error) {
	obj, d, err := v.plan(ctx, ar)
	if err != nil {
		v.cfg.Logger.WithFields(logrus.Fields{"uid": ar.ID, "namespace": ar.Namespace}).WithError(err).Error("could not plan placement")
		return &model.ValidatingAdmissionResponse{Allowed: false, Message: scheduling.WarningPrefix + "could not plan placement: " + scheduling.Truncate(err.Error(), scheduling.MaxMessageLength)}, nil
	}
	v.log("validate", ar, obj, d)
	if d == nil || d.Allowed {
		// Warnings were already given by the mutating webhook; repeating them here
		// would show every line twice.
		return &model.ValidatingAdmissionResponse{Allowed: true}, nil
	}
	if !ar.DryRun {
		v.cfg.Metrics.observeDenial(d)
	}
	v.observeDenial(ar, obj, d)
	return &model.ValidatingAdmissionResponse{Allowed: false, Message: d.Message}, nil
}
