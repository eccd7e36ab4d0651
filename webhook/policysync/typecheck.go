package policysync

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/sirupsen/logrus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// typeCheckInterval is how often CheckTypes reads back the policies not type-checked yet.
const typeCheckInterval = time.Second

// CheckTypes reads back each ValidatingAdmissionPolicy applied and not yet
// type-checked; once the API server has checked the generation applied, its warnings
// (an expression that would fail at evaluation, refusing the pods it concerns with
// failurePolicy Fail) are logged and published. Past TypeCheckTimeout it stops waiting
// and says so.
func (s *Syncer) CheckTypes(ctx context.Context) {
	changed := false
	for key, u := range s.unchecked {
		found, status, err := u.obj.get(ctx)
		switch {
		case err == nil && found.GetGeneration() != u.generation:
			s.cfg.Logger.WithFields(logrus.Fields{"object": key, "applied": u.generation, "found": found.GetGeneration()}).Warn("policy backend: someone else wrote the policy; the next drift check applies it again")
		case err == nil && status != nil && status.ObservedGeneration == u.generation && status.TypeChecking != nil:
			w := typeWarnings(u.obj, status)
			for _, text := range w {
				s.cfg.Logger.WithField("object", key).Warn("policy backend: type-checking warning: " + text)
			}
			s.warnings[key], changed = w, changed || len(w) > 0
		case time.Since(u.applied) < s.cfg.TypeCheckTimeout:
			continue
		default:
			s.cfg.Logger.WithField("object", key).Warn("policy backend: the API server has not type-checked the policy (kube-controller-manager's ValidatingAdmissionPolicy status controller); its expressions are checked when pods are admitted")
		}
		delete(s.unchecked, key)
	}
	if changed && s.status != nil {
		st := *s.status
		st.Warnings = s.allWarnings()
		s.publish(ctx, st)
	}
}

func (s *Syncer) allWarnings() []string {
	var out []string
	for _, key := range slices.Sorted(maps.Keys(s.warnings)) {
		out = append(out, s.warnings[key]...)
	}
	return out
}

func typeWarnings(obj object, st *admissionregistrationv1.ValidatingAdmissionPolicyStatus) []string {
	if st == nil || st.TypeChecking == nil {
		return nil
	}
	var out []string
	for _, w := range st.TypeChecking.ExpressionWarnings {
		out = append(out, obj.name+": "+w.FieldRef+": "+w.Warning)
	}
	return out
}
