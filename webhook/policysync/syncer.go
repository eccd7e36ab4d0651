// Package policysync keeps the webhook-free backend in force: while its replica leads,
// a Syncer renders the admission policies (package scheduling/policy) from the
// configuration in force, the config file merged with the discovered pools, and applies
// them to the API server whenever the rendering changes. When the policies cannot be
// used (an API server older than 1.36, or a configuration past the cost bounds) it
// deletes the ones it applied, so the API server never places pods by a stale
// configuration, and says why: a log line, sysctl_placement_policy_backend_active and
// sysctl_placement_policy_refused_total, and the status `pools` shows. The webhook's
// handlers keep serving all along.
package policysync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// FieldManager is the server-side apply field manager of the policies: it owns the
// fields it writes, and only those.
const FieldManager = "sysctl-placement-policy"

// Reasons the policies are not in force (the reason label of
// sysctl_placement_policy_refused_total and PolicyStatus.Reason).
const (
	// ReasonServerVersion: the API server is older than policy.MinServerVersion.
	ReasonServerVersion = "ServerVersion"
	// ReasonCost: the rendering is past the cost bounds (policy.Cost.Check).
	ReasonCost = "Cost"
	// ReasonRender: the configuration cannot be rendered at all.
	ReasonRender = "Render"
	// ReasonApply: the API server did not take the policies (RBAC, validation).
	ReasonApply = "Apply"
)

// Reasons lists every reason, so the metric shows zero for the absent ones.
var Reasons = []string{ReasonServerVersion, ReasonCost, ReasonRender, ReasonApply}

// Source is the configuration in force and when it changes (a config.Store).
type Source interface {
	Current() *scheduling.Compiled
	Changed() <-chan struct{}
}

// Config configures a Syncer.
type Config struct {
	// Source is the configuration in force (required): serve's pool Store.
	Source Source
	// Client applies the policies (required).
	Client kubernetes.Interface
	// ServerVersion returns the API server's gitVersion. Default: Client's discovery.
	ServerVersion func() (string, error)
	// Options are Render's.
	Options policy.Options
	// Identity names this replica in the status.
	Identity string
	// Publish writes the status for `pools`; nil publishes nothing.
	Publish func(context.Context, discovery.PolicyStatus) error
	// Resync is how often the applied objects are checked for changes made by others
	// (a kubectl edit, a deletion) and applied again. Default 10m.
	Resync time.Duration
	// Retry is how long after a failed apply it is tried again. Default 10s.
	Retry time.Duration
	// TypeCheckTimeout bounds the wait for the API server to type-check an applied
	// ValidatingAdmissionPolicy. Default 30s.
	TypeCheckTimeout time.Duration
	// Metrics; nil counts nothing.
	Metrics *Metrics
	// Logger; nil logs nothing.
	Logger logrus.FieldLogger
}

func (c *Config) defaults() error {
	switch {
	case c.Source == nil:
		return errors.New("policysync: the configuration source is required")
	case c.Client == nil:
		return errors.New("policysync: a Kubernetes client is required")
	}
	if c.ServerVersion == nil {
		c.ServerVersion = func() (string, error) {
			v, err := c.Client.Discovery().ServerVersion()
			if err != nil {
				return "", err
			}
			return v.GitVersion, nil
		}
	}
	if c.Resync <= 0 {
		c.Resync = 10 * time.Minute
	}
	if c.Retry <= 0 {
		c.Retry = 10 * time.Second
	}
	if c.TypeCheckTimeout <= 0 {
		c.TypeCheckTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	return nil
}

// Syncer keeps the policies in sync with the configuration; one per process.
type Syncer struct {
	cfg Config
	// applied is what this process last applied, by object: the bytes and the
	// generation the API server answered with.
	applied map[string]appliedObject
	// status is the last one published.
	status *discovery.PolicyStatus
	// unchecked are the ValidatingAdmissionPolicies applied and not yet type-checked by
	// the API server (kube-controller-manager's status controller): read back by
	// CheckTypes, so that a sync never waits for it.
	unchecked map[string]uncheckedPolicy
	// warnings are the type-checking warnings found, by object.
	warnings map[string][]string
}

type uncheckedPolicy struct {
	obj        object
	generation int64
	applied    time.Time
}

type appliedObject struct {
	data       []byte
	generation int64
}

// New returns a Syncer.
func New(cfg Config) (*Syncer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	cfg.Metrics.init()
	return &Syncer{cfg: cfg, applied: map[string]appliedObject{}, unchecked: map[string]uncheckedPolicy{}, warnings: map[string][]string{}}, nil
}

// Run syncs at start, at every change of the configuration in force (a reload of the
// config file, a new discovery result) and every Resync, until ctx ends. Serve runs it
// while its replica leads.
func (s *Syncer) Run(ctx context.Context) {
	// A new term trusts nothing it applied or published before.
	s.applied, s.unchecked, s.warnings, s.status = map[string]appliedObject{}, map[string]uncheckedPolicy{}, map[string][]string{}, nil
	resync := time.NewTicker(s.cfg.Resync)
	defer resync.Stop()
	// A replica that no longer leads does not say the policies are in force: the
	// leader's value is the one that counts (alert on the max over replicas).
	defer s.cfg.Metrics.setActive(false)
	var last *scheduling.Compiled
	var retry, typeCheck <-chan time.Time
	checkDrift := true
	for {
		changed := s.cfg.Source.Changed()
		if c := s.cfg.Source.Current(); c != nil && (c != last || checkDrift) {
			if err := s.Sync(ctx, c, checkDrift); err != nil && ctx.Err() == nil {
				s.cfg.Logger.WithError(err).Warn("policy backend: could not sync the admission policies; trying again")
				retry = time.After(s.cfg.Retry)
			}
			last, checkDrift = c, false
		}
		if len(s.unchecked) > 0 && typeCheck == nil {
			typeCheck = time.After(typeCheckInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-resync.C:
			checkDrift = true
		case <-retry:
			retry, checkDrift = nil, true
		case <-typeCheck:
			typeCheck = nil
			s.CheckTypes(ctx)
		}
	}
}

// Sync renders c and applies what changed since the last apply; with checkDrift it
// also reads each object back and applies it again when its generation is not the
// one this process wrote. It returns an error only for what is worth trying again.
func (s *Syncer) Sync(ctx context.Context, c *scheduling.Compiled, checkDrift bool) error {
	gitVersion, err := s.cfg.ServerVersion()
	if err != nil {
		return fmt.Errorf("could not read the API server's version: %w", err)
	}
	if err := policy.CheckServerVersion(gitVersion); err != nil {
		// Nothing to delete: this API server serves no v1 policies.
		s.refuse(ctx, ReasonServerVersion, err, "")
		return nil
	}
	objs, err := policy.Render(c, s.cfg.Options)
	if err != nil {
		reason, cost := ReasonRender, ""
		if objs != nil {
			reason, cost = ReasonCost, objs.Cost.String()
		}
		if derr := s.deleteAll(ctx); derr != nil {
			err = fmt.Errorf("%w; and could not delete the policies applied before, which place pods by an older configuration: %w", err, derr)
		}
		s.refuse(ctx, reason, err, cost)
		return nil
	}
	for _, obj := range s.objects(objs) {
		if err := s.apply(ctx, obj, checkDrift); err != nil {
			s.refuse(ctx, ReasonApply, err, objs.Cost.String())
			return err
		}
	}
	s.cfg.Metrics.setActive(true)
	s.publish(ctx, discovery.PolicyStatus{Active: true, Cost: objs.Cost.String(), Warnings: s.allWarnings()})
	return nil
}

// apply applies obj when its rendering changed (or, with checkDrift, when someone
// else changed it).
func (s *Syncer) apply(ctx context.Context, obj object, checkDrift bool) error {
	data, err := json.Marshal(obj.value)
	if err != nil {
		return err
	}
	last, ok := s.applied[obj.key()]
	if ok && bytes.Equal(last.data, data) {
		if !checkDrift {
			return nil
		}
		found, _, err := obj.get(ctx)
		switch {
		case apierrors.IsNotFound(err):
			s.cfg.Logger.WithField("object", obj.key()).Warn("policy backend: someone deleted the policy; applying it again")
		case err != nil:
			return fmt.Errorf("could not read %s: %w", obj.key(), err)
		case found.GetGeneration() == last.generation:
			return nil
		default:
			s.cfg.Logger.WithFields(logrus.Fields{"object": obj.key(), "applied": last.generation, "found": found.GetGeneration()}).Warn("policy backend: someone changed the policy; applying it again")
		}
	}
	generation, err := obj.patch(ctx, data)
	if err != nil {
		return fmt.Errorf("could not apply %s (serve needs deploy/components/policy-backend's RBAC): %w", obj.key(), err)
	}
	s.applied[obj.key()] = appliedObject{data: data, generation: generation}
	s.cfg.Metrics.observeApply(obj.kind)
	s.cfg.Logger.WithFields(logrus.Fields{"object": obj.key(), "generation": generation}).Info("policy backend: applied")
	if obj.kind == "ValidatingAdmissionPolicy" {
		delete(s.warnings, obj.key())
		s.unchecked[obj.key()] = uncheckedPolicy{obj: obj, generation: generation, applied: time.Now()}
	}
	return nil
}

// deleteAll deletes the policies this backend applies, bindings first, those already
// gone aside: by name, so it also removes what an earlier leader applied.
func (s *Syncer) deleteAll(ctx context.Context) error {
	var errs []error
	for _, obj := range deleteOrder(s.cfg.Client) {
		if err := obj.remove(ctx, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("could not delete %s: %w", obj.key(), err))
			continue
		}
		delete(s.applied, obj.key())
		delete(s.unchecked, obj.key())
		delete(s.warnings, obj.key())
	}
	return errors.Join(errs...)
}

// refuse reports that the policies are not in force, and why.
func (s *Syncer) refuse(ctx context.Context, reason string, err error, cost string) {
	st := discovery.PolicyStatus{Reason: reason, Message: err.Error(), Cost: cost}
	if s.status == nil || s.status.Active || s.status.Reason != reason || s.status.Message != st.Message {
		s.cfg.Logger.WithError(err).WithField("reason", reason).Error("policy backend: not in force; the webhook's handlers keep serving (keep or re-apply the webhook configurations)")
		s.cfg.Metrics.observeRefused(reason)
	}
	s.cfg.Metrics.setActive(false)
	s.publish(ctx, st)
}

// publish writes st when it differs from the last one published.
func (s *Syncer) publish(ctx context.Context, st discovery.PolicyStatus) {
	if s.status != nil && s.status.Active == st.Active && s.status.Reason == st.Reason && s.status.Message == st.Message &&
		s.status.Cost == st.Cost && slices.Equal(s.status.Warnings, st.Warnings) {
		return
	}
	if st.Active && (s.status == nil || !s.status.Active) {
		s.cfg.Logger.WithField("cost", st.Cost).Info("policy backend: in force; the API server places pods with the admission policies")
	}
	s.status = &st
	if s.cfg.Publish == nil {
		return
	}
	st.Writer, st.UpdatedAt = s.cfg.Identity, metav1.Now()
	if err := s.cfg.Publish(ctx, st); err != nil && ctx.Err() == nil {
		s.cfg.Logger.WithError(err).Warn("policy backend: could not publish its status for `pools`")
		s.status = nil // publish again at the next sync
	}
}
