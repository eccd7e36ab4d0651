package scheduling

// This file restricts the tolerations Plan may add to those the namespace's
// scheduler.alpha.kubernetes.io/tolerationsWhitelist allows. The in-tree
// PodTolerationRestriction admission plugin validates every pod's final tolerations
// against that list after the mutating webhooks ran, so a toleration we add outside it
// would only turn a placed pod into a rejected one. A pool whose taints need such a
// toleration is therefore not a candidate, and the unplaceable explanation says so.

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	schedcorev1 "k8s.io/component-helpers/scheduling/corev1"
)

// AnnotationTolerationsWhitelist is the namespace annotation the PodTolerationRestriction
// admission plugin reads: a JSON list of tolerations every pod toleration must be a
// subset of.
const AnnotationTolerationsWhitelist = "scheduler.alpha.kubernetes.io/tolerationsWhitelist"

// tolerationsWhitelist is the namespace's whitelist, parsed at most once per Plan.
type tolerationsWhitelist struct {
	parsed bool
	// restricts is false when the annotation is absent, empty or "[]": the plugin then
	// restricts nothing (an absent annotation falls back to the plugin's cluster-wide
	// whitelist, which lives in the API server's admission config and is not visible
	// to the webhook; docs/security.md says so).
	restricts bool
	list      []corev1.Toleration
	// invalid holds the JSON error when the annotation does not parse. The plugin then
	// rejects every pod with tolerations in the namespace, so no toleration may be added.
	invalid error
}

// whitelist parses the namespace's tolerationsWhitelist annotation the way the plugin
// does (extractNSTolerations): absent or empty means unrestricted, otherwise a JSON list
// of v1 tolerations.
func (p *planner) whitelist() *tolerationsWhitelist {
	w := &p.tolerations
	if w.parsed {
		return w
	}
	w.parsed = true
	v, ok := p.in.Namespace.Annotations[AnnotationTolerationsWhitelist]
	if !ok || v == "" {
		return w
	}
	if err := json.Unmarshal([]byte(v), &w.list); err != nil {
		w.invalid = err
		w.restricts = true
		p.warn("namespace annotation " + AnnotationTolerationsWhitelist + " is not valid JSON; no toleration can be added")
		return w
	}
	w.restricts = len(w.list) > 0
	return w
}

// taintOutsideWhitelist returns the first NoSchedule/NoExecute taint of the pool that
// placing the pod there would need a toleration for (the pod does not tolerate it yet)
// and whose exact toleration the namespace's whitelist does not allow.
func (p *planner) taintOutsideWhitelist(pool *compiledPool) (*corev1.Taint, bool) {
	if len(pool.taints) == 0 {
		return nil, false
	}
	w := p.whitelist()
	if !w.restricts {
		return nil, false
	}
	for i := range pool.taints {
		t := &pool.taints[i]
		if schedcorev1.TolerationsTolerateTaint(noLog, p.pod.Spec.Tolerations, t, true) {
			continue // nothing to add for this taint
		}
		if w.invalid != nil || !whitelistAllows(w.list, exactToleration(t)) {
			return t, true
		}
	}
	return nil, false
}

// exactToleration is the toleration place adds for a taint: Equal, key, value, effect,
// no tolerationSeconds.
func exactToleration(t *corev1.Taint) corev1.Toleration {
	return corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOpEqual, Value: t.Value, Effect: t.Effect}
}

// whitelistAllows reports whether some whitelist entry tolerates a superset of t, the
// check of the plugin's VerifyAgainstWhitelist.
func whitelistAllows(whitelist []corev1.Toleration, t corev1.Toleration) bool {
	for i := range whitelist {
		if isSuperset(&whitelist[i], &t) {
			return true
		}
	}
	return false
}

// isSuperset reports whether ss tolerates a superset of what t tolerates. It follows
// k8s.io/kubernetes/pkg/util/tolerations/merge.IsSuperset, which lives in
// k8s.io/kubernetes and cannot be imported from here. Unknown operators (including
// the newer Gt/Lt) never count as a superset: refusing to add a toleration is the safe
// side.
func isSuperset(ss, t *corev1.Toleration) bool {
	if apiequality.Semantic.DeepEqual(ss, t) {
		return true
	}
	// An empty key with operator Exists matches every key.
	if t.Key != ss.Key && (ss.Key != "" || ss.Operator != corev1.TolerationOpExists) {
		return false
	}
	// An empty effect matches every effect.
	if t.Effect != ss.Effect && ss.Effect != "" {
		return false
	}
	if ss.Effect == corev1.TaintEffectNoExecute && ss.TolerationSeconds != nil {
		if t.TolerationSeconds == nil || *t.TolerationSeconds > *ss.TolerationSeconds {
			return false
		}
	}
	switch ss.Operator {
	case corev1.TolerationOpEqual, "": // empty means Equal
		return t.Operator == corev1.TolerationOpEqual && t.Value == ss.Value
	case corev1.TolerationOpExists:
		return true
	default:
		return false
	}
}

// explainWhitelist appends why the whitelist keeps the pod off the pool.
func (p *planner) explainWhitelist(t *corev1.Taint) string {
	s := "its taint " + t.ToString()
	if p.tolerations.invalid != nil {
		return s + " needs a toleration, and the namespace's tolerationsWhitelist annotation is not valid JSON, so none can be added"
	}
	return s + " needs a toleration outside the namespace's tolerationsWhitelist"
}
