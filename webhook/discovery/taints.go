package discovery

// A pool's taints: those all of its nodes carry, without the ones that come
// and go with a node's lifecycle; one only some nodes carry is a problem.

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ignoredTaintPrefixes are taints that come and go with a node's lifecycle (not-ready,
// unreachable, cordoned, being scaled down); they say nothing about the pool.
var ignoredTaintPrefixes = []string{
	"node.kubernetes.io/", "node.cloudprovider.kubernetes.io/", "ToBeDeletedByClusterAutoscaler",
	"DeletionCandidateOfClusterAutoscaler", "karpenter.sh/disrupted", "karpenter.sh/disruption",
}

type taintKey struct {
	key, value string
	effect     corev1.TaintEffect
}

// commonTaints returns the NoSchedule/NoExecute taints every node carries and reports
// those only some carry.
func commonTaints(nodes []*corev1.Node, problems []Problem) ([]corev1.Taint, []Problem) {
	count := map[taintKey]int{}
	var order []taintKey
	for _, n := range nodes {
		seen := map[taintKey]bool{}
		for _, t := range n.Spec.Taints {
			if (t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute) || ignoredTaint(t.Key) {
				continue
			}
			k := taintKey{t.Key, t.Value, t.Effect}
			if seen[k] {
				continue
			}
			seen[k] = true
			if count[k] == 0 {
				order = append(order, k)
			}
			count[k]++
		}
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.key != b.key {
			return a.key < b.key
		}
		if a.value != b.value {
			return a.value < b.value
		}
		return a.effect < b.effect
	})
	var taints []corev1.Taint
	for _, k := range order {
		if count[k] == len(nodes) {
			taints = append(taints, corev1.Taint{Key: k.key, Value: k.value, Effect: k.effect})
			continue
		}
		var on []string
		for _, n := range nodes {
			for _, t := range n.Spec.Taints {
				if t.Key == k.key && t.Value == k.value && t.Effect == k.effect {
					on = append(on, n.Name)
					break
				}
			}
		}
		partial := corev1.Taint{Key: k.key, Value: k.value, Effect: k.effect}
		problems = append(problems, Problem{ProblemPartialTaint, fmt.Sprintf("%s is on %d of %d nodes (%s); not tolerated by placed pods",
			partial.ToString(), len(on), len(nodes), abbreviate(on))})
	}
	return taints, problems
}

func ignoredTaint(key string) bool {
	for _, p := range ignoredTaintPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
