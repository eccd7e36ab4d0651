package policy

// This file writes what the policies do with the variables render.go defines: the
// mutation's JSON patch (clash fixes, then placement: nodeSelector or an affinity
// term ANDed into every existing term, and exact tolerations) and the validations.

import (
	"fmt"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// taintTable is the distinct NoSchedule/NoExecute taints of every pool, in config
// order, with each pool's indexes into it.
func taintTable(pools []pool) ([]corev1.Taint, [][]int) {
	var table []corev1.Taint
	per := make([][]int, len(pools))
	for i, p := range pools {
		for _, t := range p.taints {
			at := -1
			for j, u := range table {
				if u.Key == t.Key && u.Value == t.Value && u.Effect == t.Effect {
					at = j
				}
			}
			if at < 0 {
				at = len(table)
				table = append(table, t)
			}
			per[i] = append(per[i], at)
		}
	}
	return table, per
}

// placementVariables are the constants and intermediate results only the mutation
// needs; they follow the shared variables. The tables are plain strings: the
// typed objects (tolerations, requirements, terms) exist only in the mutation's own
// expression, which builds each one it adds from them (tolerationExpr, addTerms).
func placementVariables(pools []pool) []admissionregistrationv1.Variable {
	table, per := taintTable(pools)
	var tolerated, taintKeys, taintValues, taintEffects, perPool, selectors, selectorKeys, keys, values []string
	for _, t := range table {
		tolerated = append(tolerated, toleratedExpr(t))
		taintKeys, taintValues, taintEffects = append(taintKeys, q(t.Key)), append(taintValues, q(t.Value)), append(taintEffects, q(string(t.Effect)))
	}
	for i, p := range pools {
		ids := make([]string, len(per[i]))
		for j, id := range per[i] {
			ids[j] = strconv.Itoa(id)
		}
		perPool = append(perPool, "["+strings.Join(ids, ", ")+"]")
		var sel, selKeys []string
		for _, l := range p.selector {
			sel = append(sel, q(l.key)+": "+q(l.value))
			selKeys = append(selKeys, q(l.key))
		}
		selectors = append(selectors, "{"+strings.Join(sel, ", ")+"}")
		selectorKeys = append(selectorKeys, "["+strings.Join(selKeys, ", ")+"]")
		key, value := "", ""
		if len(p.selector) == 1 {
			key, value = p.selector[0].key, p.selector[0].value
		}
		keys, values = append(keys, q(key)), append(values, q(value))
	}
	list := func(items []string) string { return "[" + strings.Join(items, ", ") + "]" }
	return []admissionregistrationv1.Variable{
		{Name: "poolTaints", Expression: list(perPool)},
		{Name: "poolSelectors", Expression: list(selectors)},
		{Name: "poolSelectorKeys", Expression: list(selectorKeys)},
		{Name: "singleKeys", Expression: list(keys)},
		{Name: "singleValues", Expression: list(values)},
		{Name: "taintKeys", Expression: list(taintKeys)},
		{Name: "taintValues", Expression: list(taintValues)},
		{Name: "taintEffects", Expression: list(taintEffects)},
		{Name: "taintTolerated", Expression: list(tolerated)},
		{Name: "addTolerations", Expression: `variables.chosen.map(i, variables.poolTaints[i]).flatten().distinct().filter(t, !variables.taintTolerated[t])`},
	}
}

// tolerationExpr is the exact toleration of taint t of the taint table.
const tolerationExpr = typeToleration + `{key: variables.taintKeys[t], operator: "Equal", value: variables.taintValues[t], effect: variables.taintEffects[t]}`

// addTerms is what to AND into the pod's required affinity: one requirement key In
// [values] when the chosen pools share one label key, else one term per pool pinning
// each of its labels.
func addTerms() string {
	return fmt.Sprintf(`(variables.chosen.all(i, variables.singleKeys[i] != "" && variables.singleKeys[i] == variables.singleKeys[variables.chosen[0]]) ? [%s{matchExpressions: [%s]}] : variables.chosen.map(i, %s{matchExpressions: variables.poolSelectorKeys[i].map(k, %s)}))`,
		typeTerm, requirementLiteral("variables.singleKeys[variables.chosen[0]]", "variables.chosen.map(i, variables.singleValues[i]).sort()"),
		typeTerm, requirementLiteral("k", "[variables.poolSelectors[i][k]]"))
}

// patchExpr is the mutation: step 2's fixes, then step 6's placement.
func patchExpr() string {
	const required = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"
	// The pod's own requirements are rebuilt as new objects: the API server cannot
	// write its typed values back into a JSON patch.
	copyReqs := func(list, typ string) string {
		return list + `.map(x, ` + typ + `{key: x.key, operator: x.operator, ?values: size(x.?values.orValue([])) > 0 ? optional.of(x.values.map(v, v)) : optional.none()})`
	}
	ownFields := `e.?matchFields.orValue([])`
	terms := `variables.affinityTerms.map(e, size(e.?matchExpressions.orValue([])) == 0 && size(` + ownFields + `) == 0 ? [` + typeTerm + `{}] : {{addTerms}}.map(a, ` +
		typeTerm + `{?matchFields: size(` + ownFields + `) > 0 ? optional.of(` + copyReqs(ownFields, typeTerm+".matchFields") + `) : optional.none(), ` +
		`matchExpressions: ` + copyReqs(`e.?matchExpressions.orValue([])`, typeRequirement) + ` + a.matchExpressions.filter(r, !e.?matchExpressions.orValue([]).exists(x, x.key == r.key && x.operator == r.operator && x.?values.orValue([]) == r.values))})).flatten()`
	requiredObj := typeRequired + `{nodeSelectorTerms: {{addTerms}}}`
	nodeAffObj := typeNodeAff + `{requiredDuringSchedulingIgnoredDuringExecution: ` + requiredObj + `}`
	affinity := `(!has(object.spec.affinity) ? [JSONPatch{op: "add", path: "/spec/affinity", value: ` + typeAffinity + `{nodeAffinity: ` + nodeAffObj + `}}] : ` +
		`!has(object.spec.affinity.nodeAffinity) ? [JSONPatch{op: "add", path: "/spec/affinity/nodeAffinity", value: ` + nodeAffObj + `}] : ` +
		`!variables.hasAffinity ? [JSONPatch{op: "add", path: "` + required + `", value: ` + requiredObj + `}] : ` +
		`[JSONPatch{op: "add", path: "` + required + `/nodeSelectorTerms", value: size(variables.affinityTerms) == 0 ? {{addTerms}} : ` + terms + `}])`
	selector := `(has(object.spec.nodeSelector) ? variables.poolSelectors[variables.chosen[0]].filter(k, !(k in object.spec.nodeSelector)).map(k, JSONPatch{op: "add", path: "/spec/nodeSelector/" + jsonpatch.escapeKey(k), value: variables.poolSelectors[variables.chosen[0]][k]}) : ` +
		`[JSONPatch{op: "add", path: "/spec/nodeSelector", value: variables.poolSelectors[variables.chosen[0]]}])`
	tolerations := `(size(variables.addTolerations) == 0 ? [] : has(object.spec.tolerations) ? variables.addTolerations.map(t, JSONPatch{op: "add", path: "/spec/tolerations/-", value: {{toleration}}}) : ` +
		`[JSONPatch{op: "add", path: "/spec/tolerations", value: variables.addTolerations.map(t, {{toleration}})}])`
	var parts []string
	for i := range scheduling.HostNamespaces {
		f := scheduling.HostNamespaces[i].Field
		parts = append(parts, fmt.Sprintf(`(variables.strip_%[1]s ? [JSONPatch{op: "add", path: "/spec/%[1]s", value: false}] : [])`, f))
	}
	parts = append(parts,
		`(size(variables.dropped) > 0 ? [JSONPatch{op: "replace", path: "/spec/securityContext/sysctls", value: variables.kept.map(i, Object.spec.securityContext.sysctls{name: object.spec.securityContext.sysctls[i].name, value: object.spec.securityContext.sysctls[i].value})}] : [])`,
		`(variables.place ? (size(variables.chosen) == 1 ? `+selector+` : `+affinity+`) + `+tolerations+` : [])`,
	)
	return strings.NewReplacer("{{addTerms}}", addTerms(), "{{toleration}}", tolerationExpr).Replace(strings.Join(parts, " +\n"))
}

// denials are the validations the Deny binding enforces, on the final object.
func denials(pools []pool) []admissionregistrationv1.Validation {
	return []admissionregistrationv1.Validation{
		{
			Expression: fmt.Sprintf(`size(object.spec.securityContext.sysctls) <= %d`, scheduling.MaxSysctls),
			MessageExpression: fmt.Sprintf(`"too many sysctls: the pod sets " + string(size(object.spec.securityContext.sysctls)) + " entries in securityContext.sysctls and sysctl-placement accepts at most %d per pod; set only the sysctls the workload needs"`,
				scheduling.MaxSysctls),
			Reason: forbidden(),
		},
		{
			Expression: fmt.Sprintf(`object.spec.securityContext.sysctls.all(s, size(s.name) <= %d)`, scheduling.MaxSysctlNameLength),
			Message:    fmt.Sprintf("sysctl name too long: a name in securityContext.sysctls is longer than %d characters, the API server's own limit; fix the name", scheduling.MaxSysctlNameLength),
			Reason:     forbidden(),
		},
		{
			Expression: `!variables.usersConflict`,
			MessageExpression: `"conflict: pod.spec.hostUsers = " + (has(object.spec.hostUsers) ? string(object.spec.hostUsers) : "unset (host user namespace)") + "; pod.spec.securityContext.sysctls = " + ` +
				`variables.kept.filter(i, variables.kinds[i] == "User").map(i, object.spec.securityContext.sysctls[i].name).join(", ") + ` +
				`(variables.mode_hostUsers == "flag" ? ": user.* sysctls are namespaced by the user namespace and the container runtime refuses them in the host's; set spec.hostUsers: false (the nodes need user-namespace support) or drop the sysctls" : ": these sysctls need the pod's own user namespace, and hostUsers: false is not allowed together with hostNetwork, hostIPC or hostPID; drop the sysctls or the other host namespaces")`,
			Reason: forbidden(),
		},
		{
			Expression:        `!(variables.unplaceable == "deny" && variables.unplaceableNow)`,
			MessageExpression: unplaceableMessage(pools, "unplaceable sysctls: no node pool can run "),
			Reason:            forbidden(),
		},
	}
}

// warnings are the validations the Warn binding reports. The cheap mode test comes
// first, so the candidates are computed only where unplaceable is warn (match
// conditions cannot read the namespace).
func warnings(pools []pool) []admissionregistrationv1.Validation {
	return []admissionregistrationv1.Validation{{
		Expression:        `!(variables.unplaceable == "warn" && variables.unplaceableNow)`,
		MessageExpression: `"sysctl-placement: no pool allows " + variables.kept.map(i, object.spec.securityContext.sysctls[i].name).join(", ") + "; admitted without placement (policy warn)"`,
	}}
}

// unplaceableMessage names the sysctls and, per pool, why it is not a candidate; it
// is cut at scheduling.MaxMessageLength as the webhook's is.
func unplaceableMessage(pools []pool, lead string) string {
	var perPool []string
	for i := range pools {
		p := &pools[i]
		is := strconv.Itoa(i)
		reasons := []string{
			`(variables.allows` + is + ` ? [] : ["its kubelets do not allow " + variables.kept.filter(k, !(` + p.allowsExpr("variables.sysctls[k]", "variables.kinds[k]") + `)).map(k, object.spec.securityContext.sysctls[k].name).join(", ")])`,
			`(!variables.hasPoolList || ` + q(p.name) + ` in variables.poolList ? [] : ["not in the namespace's ` + scheduling.AnnotationPools + ` annotation"])`,
			`(` + p.namespaceSelectorExpr("variables.nsLabels") + ` ? [] : ["its namespaceSelector does not select the namespace"])`,
			`(` + p.selectorCompatibleExpr("variables.nodeSelector") + ` ? [] : ["the pod's nodeSelector conflicts with its selector"])`,
			`(` + p.affinityAllowsExpr() + ` ? [] : ["the pod's required node affinity excludes it"])`,
		}
		perPool = append(perPool, `(variables.candidate`+is+` ? "" : "; pool "+`+q(p.name)+`+": "+(`+strings.Join(reasons, " + ")+`).join(", "))`)
	}
	if len(perPool) == 0 {
		perPool = []string{`"; no node pools are configured"`}
	}
	msg := q(lead) + ` + variables.kept.map(i, object.spec.securityContext.sysctls[i].name).join(", ") + ` +
		`(variables.kept.exists(i, variables.kinds[i] == "") ? "; " + variables.kept.filter(i, variables.kinds[i] == "").map(i, object.spec.securityContext.sysctls[i].name).join(", ") + " is not a namespaced sysctl; no kubelet can allow it" : "") + ` +
		strings.Join(perPool, " + ")
	return fmt.Sprintf(`[%s].map(m, size(m) > %d ? m.substring(0, %d) : m)[0]`, msg, scheduling.MaxMessageLength, scheduling.MaxMessageLength)
}

// forbidden is the reason of every denial: the pod is refused by policy.
func forbidden() *metav1.StatusReason { return ptr.To(metav1.StatusReasonForbidden) }
