// Package policy compiles the pools into a MutatingAdmissionPolicy and
// ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1, CEL run inside the API
// server): the webhook-free backend. It is pure: pools in, objects out, no client.
//
// The policies make the decisions scheduling.Plan makes, in the same order, for Pods:
// skip, limits, host-namespace clashes, candidates, already placed, unplaceable,
// place. The pools become literal CEL (see compile.go), so the API server evaluates
// constants, not a table. Where CEL cannot follow Plan, docs/design.md ("Policy
// backend") says what differs.
package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Name is the name of the MutatingAdmissionPolicy, of the deny
// ValidatingAdmissionPolicy and of their bindings; the warning policy and its binding
// are NameWarnings.
const (
	Name         = "sysctl-placement"
	NameWarnings = "sysctl-placement-warnings"
)

// Objects are what Render returns, in the order kubectl should apply them (a binding
// after its policy).
type Objects struct {
	Mutating          *admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBinding   *admissionregistrationv1.MutatingAdmissionPolicyBinding
	Validating        *admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	Warnings          *admissionregistrationv1.ValidatingAdmissionPolicy
	WarningsBinding   *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	// Cost is the estimate Render checked against the bounds (cost.go).
	Cost Cost
}

// List returns the objects in apply order.
func (o *Objects) List() []any {
	return []any{o.Mutating, o.MutatingBinding, o.Validating, o.ValidatingBinding, o.Warnings, o.WarningsBinding}
}

// optedIn selects the namespaces the shipped webhook configurations select
// (deploy/base): labelled sysctl-placement.io/enabled=true, and never the control
// plane's own namespaces. TestOptInMatchesTheShippedWebhooks holds them equal.
func optedIn() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: scheduling.LabelEnabled, Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}},
		{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"kube-system", "kube-node-lease", "sysctl-placement"}},
	}}
}

// Options tune Render.
type Options struct {
	// AllowSlowerThanWebhook renders past MaxTypicalCost (tests, or a cluster that
	// prefers no running webhook to speed); MaxLargestCost still applies.
	AllowSlowerThanWebhook bool
}

// Render compiles c into the policies and bindings, or refuses (an error saying to
// use the webhook) when their estimated cost is past the bounds in cost.go.
func Render(c *scheduling.Compiled, opts Options) (*Objects, error) {
	if c == nil {
		return nil, fmt.Errorf("no configuration to render")
	}
	pools, everywhere, err := compilePools(c)
	if err != nil {
		return nil, err
	}
	vars := variables(pools, everywhere, c.Policy())
	placement := placementVariables(pools)
	fail := admissionregistrationv1.Fail
	match := &admissionregistrationv1.MatchResources{
		NamespaceSelector: optedIn(),
		ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}}},
	}
	o := &Objects{
		Mutating: &admissionregistrationv1.MutatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
			ObjectMeta: objectMeta(Name),
			Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
				MatchConstraints: match.DeepCopy(),
				MatchConditions:  append(matchConditions(), withinLimits),
				Variables:        append(slices.Clip(vars), placement...),
				Mutations: []admissionregistrationv1.Mutation{{
					PatchType: admissionregistrationv1.PatchTypeJSONPatch,
					JSONPatch: &admissionregistrationv1.JSONPatch{Expression: patchExpr()},
				}},
				FailurePolicy: &fail,
				// Planning is idempotent: a reinvoked policy finds the pod placed and
				// its clashes resolved, and patches nothing.
				ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
			},
		},
		MutatingBinding: &admissionregistrationv1.MutatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
			ObjectMeta: objectMeta(Name),
			Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: Name},
		},
		Validating:        validatingPolicy(Name, match, matchConditions(), vars, denials(pools)),
		ValidatingBinding: validatingBinding(Name, admissionregistrationv1.Deny),
		Warnings:          validatingPolicy(NameWarnings, match, matchConditions(), vars, warnings(pools)),
		WarningsBinding:   validatingBinding(NameWarnings, admissionregistrationv1.Warn),
	}
	o.Cost = Estimate(pools, everywhere)
	if err := o.Cost.Check(opts.AllowSlowerThanWebhook); err != nil {
		return o, err
	}
	return o, nil
}

// Labels are the labels of every object Render returns: what tells them from another
// tool's objects of the same name (uninstall-cleanup deletes only objects that carry
// them).
func Labels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": "sysctl-placement", "app.kubernetes.io/component": "admission-policy"}
}

func objectMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: Labels()}
}

func validatingPolicy(name string, match *admissionregistrationv1.MatchResources, conditions []admissionregistrationv1.MatchCondition, vars []admissionregistrationv1.Variable, v []admissionregistrationv1.Validation) *admissionregistrationv1.ValidatingAdmissionPolicy {
	fail := admissionregistrationv1.Fail
	return &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: objectMeta(name),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: match.DeepCopy(),
			MatchConditions:  conditions,
			Variables:        vars,
			Validations:      v,
			FailurePolicy:    &fail,
		},
	}
}

func validatingBinding(name string, action admissionregistrationv1.ValidationAction) *admissionregistrationv1.ValidatingAdmissionPolicyBinding {
	return &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: objectMeta(name),
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionregistrationv1.ValidationAction{action},
		},
	}
}

// matchConditions are step 1 (skip) and the webhook configuration's own conditions.
func matchConditions() []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{
		{Name: "has-sysctls", Expression: `has(object.spec.securityContext) && has(object.spec.securityContext.sysctls) && size(object.spec.securityContext.sysctls) > 0`},
		{Name: "not-bound-to-a-node", Expression: `!has(object.spec.nodeName) || object.spec.nodeName == ""`},
		{Name: "not-skipped", Expression: `object.metadata.?annotations[?` + q(scheduling.AnnotationSkip) + `].orValue("") != "true"`},
	}
}

// withinLimits keeps the mutation away from pods past scheduling's limits, which the
// validating policy denies; it also bounds the mutation's cost by the number of
// sysctls.
var withinLimits = admissionregistrationv1.MatchCondition{
	Name: "within-limits",
	Expression: fmt.Sprintf(`size(object.spec.securityContext.sysctls) <= %d && object.spec.securityContext.sysctls.all(s, size(s.name) <= %d)`,
		scheduling.MaxSysctls, scheduling.MaxSysctlNameLength),
}

// modeExpr is the namespace annotation's value when it is one of valid, else the
// policy's.
func modeExpr(annotation string, valid []string, policy string) string {
	return fmt.Sprintf(`variables.annotations[?%[1]s].orValue("") in %[2]s ? variables.annotations[%[1]s] : %[3]s`, q(annotation), qs(valid), q(policy))
}

// variables are shared by the mutating and the validating policies, so the validating
// one judges the final object by the very same definitions.
func variables(pools []pool, everywhere []string, pol scheduling.Policy) []admissionregistrationv1.Variable {
	v := []admissionregistrationv1.Variable{
		{Name: "annotations", Expression: `namespaceObject.metadata.?annotations.orValue({})`},
		{Name: "nsLabels", Expression: `namespaceObject.metadata.?labels.orValue({})`},
		{Name: "sysctls", Expression: `object.spec.securityContext.sysctls.map(s, ` + normalizeExpr("s.name") + `)`},
		{Name: "kinds", Expression: `variables.sysctls.map(n, ` + namespaceExpr("n") + `)`},
		{Name: "unplaceable", Expression: modeExpr(scheduling.AnnotationUnplaceable, []string{string(scheduling.UnplaceableDeny), string(scheduling.UnplaceableWarn)}, string(pol.Unplaceable))},
	}
	shared := map[string]string{
		"hostIPC":     `object.spec.?hostIPC.orValue(false)`,
		"hostNetwork": `object.spec.?hostNetwork.orValue(false)`,
		"hostUsers":   `object.spec.?hostUsers.orValue(true)`,
	}
	var dropped []string
	for i := range scheduling.HostNamespaces {
		h := &scheduling.HostNamespaces[i]
		f := h.Field
		v = append(v,
			admissionregistrationv1.Variable{Name: "mode_" + f, Expression: modeExpr(h.Annotation, scheduling.ClashModeNames(), string(*h.Mode(&pol)))},
			admissionregistrationv1.Variable{Name: "clash_" + f, Expression: fmt.Sprintf(`%s && %q in variables.kinds`, shared[f], h.Sysctls)},
		)
		dropped = append(dropped, fmt.Sprintf(`(variables.clash_%s && variables.mode_%s == "drop-sysctls" ? [%q] : [])`, f, f, h.Sysctls))
		if f != "hostUsers" {
			v = append(v, admissionregistrationv1.Variable{Name: "strip_" + f, Expression: fmt.Sprintf(`variables.clash_%s && variables.mode_%s == "strip"`, f, f)})
		}
	}
	v = append(v,
		// A flagged User clash is denied; so is stripping hostUsers while another
		// host namespace stays on (the API server refuses hostUsers: false with them).
		admissionregistrationv1.Variable{Name: "usersConflict", Expression: `variables.clash_hostUsers && (variables.mode_hostUsers == "flag" || variables.mode_hostUsers == "strip" && (object.spec.?hostNetwork.orValue(false) && !variables.strip_hostNetwork || object.spec.?hostIPC.orValue(false) && !variables.strip_hostIPC || object.spec.?hostPID.orValue(false)))`},
		admissionregistrationv1.Variable{Name: "strip_hostUsers", Expression: `variables.clash_hostUsers && variables.mode_hostUsers == "strip" && !variables.usersConflict`},
		admissionregistrationv1.Variable{Name: "dropped", Expression: strings.Join(dropped, " + ")},
		admissionregistrationv1.Variable{Name: "kept", Expression: `lists.range(size(variables.sysctls)).filter(i, !(variables.kinds[i] in variables.dropped))`},
		admissionregistrationv1.Variable{Name: "needsPlacing", Expression: `!variables.usersConflict && variables.kept.exists(i, !(variables.sysctls[i] in ` + qs(everywhere) + `))`},
		admissionregistrationv1.Variable{Name: "nodeSelector", Expression: `object.spec.?nodeSelector.orValue({})`},
		admissionregistrationv1.Variable{Name: "tolerations", Expression: `object.spec.?tolerations.orValue([])`},
		admissionregistrationv1.Variable{Name: "hasAffinity", Expression: `has(object.spec.affinity) && has(object.spec.affinity.nodeAffinity) && has(object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution)`},
		admissionregistrationv1.Variable{Name: "affinityTerms", Expression: `variables.hasAffinity ? object.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.?nodeSelectorTerms.orValue([]) : []`},
		admissionregistrationv1.Variable{Name: "liveTerms", Expression: `variables.affinityTerms.filter(t, size(t.?matchExpressions.orValue([])) > 0 || size(t.?matchFields.orValue([])) > 0)`},
		admissionregistrationv1.Variable{Name: "hasPoolList", Expression: `variables.annotations[?` + q(scheduling.AnnotationPools) + `].hasValue()`},
		admissionregistrationv1.Variable{Name: "poolList", Expression: `variables.annotations[?` + q(scheduling.AnnotationPools) + `].orValue("").split(",").map(x, x.trim())`},
	)
	var cands, selects, selectedTolerated, prio, placed, singles []string
	for i := range pools {
		p := &pools[i]
		is := strconv.Itoa(i)
		v = append(v,
			admissionregistrationv1.Variable{Name: "allows" + is, Expression: `variables.kept.all(k, ` + p.allowsExpr("variables.sysctls[k]", "variables.kinds[k]") + `)`},
			admissionregistrationv1.Variable{Name: "selects" + is, Expression: p.selectsExpr("variables.nodeSelector")},
			admissionregistrationv1.Variable{Name: "tolerates" + is, Expression: p.toleratesExpr()},
			admissionregistrationv1.Variable{Name: "candidate" + is, Expression: strings.Join([]string{
				"variables.allows" + is,
				"(!variables.hasPoolList || " + q(p.name) + " in variables.poolList)",
				"(" + p.namespaceSelectorExpr("variables.nsLabels") + ")",
				"(" + p.selectorCompatibleExpr("variables.nodeSelector") + ")",
				"(" + p.affinityAllowsExpr() + ")",
			}, " && ")},
		)
		cands = append(cands, fmt.Sprintf("(variables.candidate%s ? [%s] : [])", is, is))
		selects = append(selects, "variables.selects"+is)
		selectedTolerated = append(selectedTolerated, fmt.Sprintf("(variables.candidate%[1]s && variables.selects%[1]s && variables.tolerates%[1]s)", is))
		prio = append(prio, strconv.Itoa(int(p.priority)))
		placed = append(placed, fmt.Sprintf("(variables.candidate%[1]s && variables.tolerates%[1]s && %[2]s)", is, p.impliesInTermExpr("variables.nodeSelector")))
		if len(p.selector) == 1 {
			singles = append(singles, fmt.Sprintf("(variables.candidate%[1]s && variables.tolerates%[1]s ? [%[2]s] : [])", is, q(p.selector[0].key+"="+p.selector[0].value)))
		}
	}
	if len(pools) == 0 {
		cands, selects, selectedTolerated, placed = []string{"[]"}, []string{}, []string{"false"}, []string{"false"}
	}
	if len(singles) == 0 {
		singles = []string{"[]"}
	}
	v = append(v,
		admissionregistrationv1.Variable{Name: "candidates", Expression: `variables.needsPlacing ? ` + strings.Join(cands, " + ") + ` : []`},
		admissionregistrationv1.Variable{Name: "selected", Expression: "[" + strings.Join(selects, ", ") + "]"},
		admissionregistrationv1.Variable{Name: "singles", Expression: strings.Join(singles, " + ")},
		// Step 4: the pod's nodeSelector implies a tolerated candidate, or every
		// non-empty required term restricts it to tolerated candidates. Written out per
		// pool so that it stops at the first.
		admissionregistrationv1.Variable{Name: "placed", Expression: strings.Join(selectedTolerated, " || ") + ` || ` +
			`variables.hasAffinity && size(variables.liveTerms) > 0 && variables.liveTerms.all(t, ` + strings.Join(placed, " || ") +
			` || t.?matchExpressions.orValue([]).exists(r, r.operator == "In" && size(r.?values.orValue([])) > 0 && r.values.all(v, r.key + "=" + v in variables.singles)))`},
		admissionregistrationv1.Variable{Name: "preferred", Expression: `size(variables.nodeSelector) > 0 && variables.candidates.exists(i, variables.selected[i]) ? variables.candidates.filter(i, variables.selected[i]) : variables.candidates`},
		admissionregistrationv1.Variable{Name: "priorities", Expression: "[" + strings.Join(prio, ", ") + "]"},
		admissionregistrationv1.Variable{Name: "top", Expression: `size(variables.preferred) == 0 ? 0 : variables.preferred.map(i, variables.priorities[i]).max()`},
		admissionregistrationv1.Variable{Name: "chosen", Expression: `variables.preferred.filter(i, variables.priorities[i] == variables.top)`},
		admissionregistrationv1.Variable{Name: "place", Expression: `variables.needsPlacing && size(variables.candidates) > 0 && !variables.placed`},
		admissionregistrationv1.Variable{Name: "unplaceableNow", Expression: `variables.needsPlacing && size(variables.candidates) == 0`},
	)
	return v
}
