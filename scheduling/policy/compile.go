package policy

// This file turns the compiled pools into literal CEL: per pool, the sysctls its
// kubelets allow as one `in` set (safe and exact names) and a `startsWith` per
// trailing-* pattern, its selector and taints as constants, so nothing in the API
// server walks a table of pools at admission time.

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/node/util/sysctl"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Type names of the objects the mutation builds, as the API server's CEL names the
// Pod schema's types (Object.<path>).
const (
	typeToleration  = "Object.spec.tolerations"
	typeAffinity    = "Object.spec.affinity"
	typeNodeAff     = typeAffinity + ".nodeAffinity"
	typeRequired    = typeNodeAff + ".requiredDuringSchedulingIgnoredDuringExecution"
	typeTerm        = typeRequired + ".nodeSelectorTerms"
	typeRequirement = typeTerm + ".matchExpressions"
)

// namespacedNames and namespacedPrefixes are the kernel namespaces of sysctls as
// k8s.io/component-helpers/node/util/sysctl knows them (its table is unexported);
// TestNamespaceTableMatchesComponentHelpers proves them equal on every name the
// project knows.
var (
	namespacedNames = map[string]sysctl.Namespace{
		"kernel.domainname": sysctl.UTSNamespace,
		"kernel.sem":        sysctl.IPCNamespace, "kernel.shmall": sysctl.IPCNamespace,
		"kernel.shmmax": sysctl.IPCNamespace, "kernel.shmmni": sysctl.IPCNamespace,
		"kernel.shm_rmid_forced": sysctl.IPCNamespace, "kernel.shm": sysctl.IPCNamespace,
		"kernel.msgmax": sysctl.IPCNamespace, "kernel.msgmnb": sysctl.IPCNamespace,
		"kernel.msgmni": sysctl.IPCNamespace, "kernel.msg": sysctl.IPCNamespace,
	}
	namespacedPrefixes = []struct {
		prefix string
		ns     sysctl.Namespace
	}{{"net.", sysctl.NetNamespace}, {"fs.mqueue.", sysctl.IPCNamespace}, {"user.", sysctl.UserNamespace}}
)

// q quotes s as a CEL string literal.
func q(s string) string { return strconv.Quote(s) }

// qs quotes each string and joins them as a CEL list literal.
func qs(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = q(s)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// normalizeExpr is sysctl.NormalizeName in CEL: a name whose first separator is '/'
// has '.' and '/' swapped.
func normalizeExpr(n string) string {
	return fmt.Sprintf(`(%[1]s.indexOf("/") >= 0 && (%[1]s.indexOf(".") < 0 || %[1]s.indexOf("/") < %[1]s.indexOf(".")) ? %[1]s.replace(".", "\t").replace("/", ".").replace("\t", "/") : %[1]s)`, n)
}

// namespaceExpr is the kernel namespace ("IPC", "Net", "User", "UTS" or "") of the
// normalised name n.
func namespaceExpr(n string) string {
	byNS := map[sysctl.Namespace][]string{}
	for name, ns := range namespacedNames {
		byNS[ns] = append(byNS[ns], name)
	}
	var b strings.Builder
	for _, ns := range []sysctl.Namespace{sysctl.IPCNamespace, sysctl.UTSNamespace} {
		names := byNS[ns]
		slices.Sort(names)
		fmt.Fprintf(&b, "%s in %s ? %q : ", n, qs(names), ns)
	}
	for _, p := range namespacedPrefixes {
		fmt.Fprintf(&b, "%s.startsWith(%q) ? %q : ", n, p.prefix, p.ns)
	}
	b.WriteString(`""`)
	return b.String()
}

// pool is one pool with what the CEL needs of it.
type pool struct {
	name     string
	selector []selectorLabel // sorted by key
	taints   []corev1.Taint  // NoSchedule and NoExecute only
	allowed  []string        // safe and exact names, sorted
	prefixes []string        // trailing-* patterns without the '*', sorted
	priority int32
	nsSel    *metav1.LabelSelector
}

type selectorLabel struct{ key, value string }

// compilePools reads what the CEL needs from the compiled configuration.
func compilePools(c *scheduling.Compiled) ([]pool, []string, error) {
	everywhere, err := scheduling.SafeSysctls("", "")
	if err != nil {
		return nil, nil, err
	}
	var out []pool
	for _, p := range c.Pools() {
		safe, err := scheduling.SafeSysctls(p.KubeletVersion, p.KernelVersion)
		if err != nil {
			return nil, nil, fmt.Errorf("pool %s: %w", p.Name, err)
		}
		everywhere = slices.DeleteFunc(everywhere, func(s string) bool { return !slices.Contains(safe, s) })
		cp := pool{name: p.Name, priority: p.Priority, nsSel: p.NamespaceSelector}
		for _, k := range slices.Sorted(maps.Keys(p.NodeSelector)) {
			cp.selector = append(cp.selector, selectorLabel{k, p.NodeSelector[k]})
		}
		for _, t := range p.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
				cp.taints = append(cp.taints, t)
			}
		}
		allowed := append([]string(nil), safe...)
		for _, s := range p.AllowedUnsafeSysctls {
			s = sysctl.NormalizeName(s)
			if prefix, ok := strings.CutSuffix(s, "*"); ok {
				cp.prefixes = append(cp.prefixes, prefix)
			} else {
				allowed = append(allowed, s)
			}
		}
		slices.Sort(allowed)
		cp.allowed = slices.Compact(allowed)
		slices.Sort(cp.prefixes)
		cp.prefixes = slices.Compact(cp.prefixes)
		out = append(out, cp)
	}
	return out, everywhere, nil
}

// allowsExpr is whether pool p's kubelets allow the normalised name n of kernel
// namespace kind.
func (p *pool) allowsExpr(n, kind string) string {
	parts := []string{}
	if len(p.allowed) > 0 {
		parts = append(parts, n+" in "+qs(p.allowed))
	}
	for _, prefix := range p.prefixes {
		parts = append(parts, n+".startsWith("+q(prefix)+")")
	}
	if len(parts) == 0 {
		return "false"
	}
	return kind + ` != "" && (` + strings.Join(parts, " || ") + ")"
}

// namespaceSelectorExpr is the pool's namespaceSelector over the namespace's labels.
func (p *pool) namespaceSelectorExpr(labels string) string {
	if p.nsSel == nil {
		return "true"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p.nsSel.MatchLabels)) {
		parts = append(parts, fmt.Sprintf("(%[2]s in %[1]s && %[1]s[%[2]s] == %[3]s)", labels, q(k), q(p.nsSel.MatchLabels[k])))
	}
	for _, r := range p.nsSel.MatchExpressions {
		k := q(r.Key)
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			parts = append(parts, fmt.Sprintf("(%[2]s in %[1]s && %[1]s[%[2]s] in %[3]s)", labels, k, qs(r.Values)))
		case metav1.LabelSelectorOpNotIn:
			parts = append(parts, fmt.Sprintf("(!(%[2]s in %[1]s) || !(%[1]s[%[2]s] in %[3]s))", labels, k, qs(r.Values)))
		case metav1.LabelSelectorOpExists:
			parts = append(parts, fmt.Sprintf("(%s in %s)", k, labels))
		case metav1.LabelSelectorOpDoesNotExist:
			parts = append(parts, fmt.Sprintf("!(%s in %s)", k, labels))
		}
	}
	if len(parts) == 0 {
		return "true"
	}
	return strings.Join(parts, " && ")
}

// selectorCompatibleExpr is step 3's nodeSelector check: the pod's nodeSelector sets
// none of the pool's keys to another value.
func (p *pool) selectorCompatibleExpr(sel string) string {
	parts := make([]string, len(p.selector))
	for i, l := range p.selector {
		parts[i] = fmt.Sprintf("(!(%[2]s in %[1]s) || %[1]s[%[2]s] == %[3]s)", sel, q(l.key), q(l.value))
	}
	return strings.Join(parts, " && ")
}

// selectsExpr is impliesPool(nodeSelector, nil): the pod's nodeSelector carries
// every label of the pool's selector.
func (p *pool) selectsExpr(sel string) string {
	parts := make([]string, len(p.selector))
	for i, l := range p.selector {
		parts[i] = fmt.Sprintf("(%[2]s in %[1]s && %[1]s[%[2]s] == %[3]s)", sel, q(l.key), q(l.value))
	}
	return strings.Join(parts, " && ")
}

// requirementMatchesExpr is whether the requirement r matches a node carrying only
// the label value v (nodeaffinity's semantics for In, NotIn, Exists, DoesNotExist, Gt
// and Lt; an invalid requirement matches nothing).
func requirementMatchesExpr(r, v string) string {
	values := r + `.?values.orValue([])`
	parts := []string{
		fmt.Sprintf(`(%s.operator == "In" && %s in %s)`, r, q(v), values),
		fmt.Sprintf(`(%s.operator == "NotIn" && size(%s) > 0 && !(%s in %s))`, r, values, q(v), values),
		fmt.Sprintf(`(%s.operator == "Exists" && size(%s) == 0)`, r, values),
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		for op, cmp := range map[string]string{"Gt": ">", "Lt": "<"} {
			parts = append(parts, fmt.Sprintf(`(%[1]s.operator == %[2]q && size(%[3]s) == 1 && %[3]s[0].matches("^[-+]?[0-9]{1,18}$") && %[4]d %[5]s int(%[3]s[0]))`, r, op, values, n, cmp))
		}
	}
	slices.Sort(parts[3:])
	return "(" + strings.Join(parts, " || ") + ")"
}

// affinityAllowsExpr is step 3's affinity check: some non-empty required term has
// no requirement on a key of the pool's selector that the pool's labels fail.
func (p *pool) affinityAllowsExpr() string {
	check := "true"
	for i := len(p.selector) - 1; i >= 0; i-- {
		l := p.selector[i]
		check = fmt.Sprintf("(r.key == %s ? %s : %s)", q(l.key), requirementMatchesExpr("r", l.value), check)
	}
	return fmt.Sprintf("!variables.hasAffinity || variables.liveTerms.exists(t, t.?matchExpressions.orValue([]).all(r, %s))", check)
}

// toleratesExpr is whether the pod's tolerations tolerate every taint of the pool
// (schedcorev1.TolerationsTolerateTaint for Equal and Exists).
func (p *pool) toleratesExpr() string {
	if len(p.taints) == 0 {
		return "true"
	}
	parts := make([]string, len(p.taints))
	for i, t := range p.taints {
		parts[i] = toleratedExpr(t)
	}
	return strings.Join(parts, " && ")
}

func toleratedExpr(t corev1.Taint) string {
	return fmt.Sprintf(`variables.tolerations.exists(t, (t.?effect.orValue("") == "" || t.effect == %[3]s) && (t.?key.orValue("") == "" || t.key == %[1]s) && (t.?operator.orValue("") in ["", "Equal"] ? t.?value.orValue("") == %[2]s : t.operator == "Exists"))`,
		q(t.Key), q(t.Value), q(string(t.Effect)))
}

// impliesInTermExpr is impliesPool(nodeSelector, t.matchExpressions): each label of
// the pool's selector is in the nodeSelector or pinned by a single-value In.
func (p *pool) impliesInTermExpr(sel string) string {
	parts := make([]string, len(p.selector))
	for i, l := range p.selector {
		parts[i] = fmt.Sprintf(`((%[2]s in %[1]s && %[1]s[%[2]s] == %[3]s) || t.?matchExpressions.orValue([]).exists(r, r.key == %[2]s && r.operator == "In" && r.?values.orValue([]) == [%[3]s]))`, sel, q(l.key), q(l.value))
	}
	return strings.Join(parts, " && ")
}

// requirementLiteral is a node-affinity requirement object pinning one label.
func requirementLiteral(key, values string) string {
	return fmt.Sprintf(`%s{key: %s, operator: "In", values: %s}`, typeRequirement, key, values)
}
