package policy

// This file estimates what the generated policies cost the API server per pod, in CEL
// cost units, and refuses to render past two bounds.
//
// k8s.io/apiserver's estimator is not a dependency of this module (adding it would pull
// the API server into the webhook's build), so this is a model of our own, written
// against the generated expressions and meant to err high: a literal list counts as
// built on every evaluation, `x in list` as a walk of the list, every comprehension
// step as its body plus two. Each policy evaluates the shared variables on its own, so
// a pod pays for them three times (mutation, deny, warn).

import (
	"fmt"
)

// Shape is the size of a pod, as far as the policies' cost depends on it.
type Shape struct {
	Sysctls, Tolerations, Terms, Requirements, SelectorLabels int
}

// TypicalPod is a database or network server's pod: a few sysctls, a couple of
// tolerations and labels, at most one required term.
var TypicalPod = Shape{Sysctls: 4, Tolerations: 2, Terms: 1, Requirements: 2, SelectorLabels: 2}

// LargestPod is the largest pod the mutation takes (the within-limits condition
// passes at most scheduling.MaxSysctls sysctls) with generous other lists.
var LargestPod = Shape{Sysctls: 128, Tolerations: 64, Terms: 8, Requirements: 16, SelectorLabels: 16}

// Bounds past which Render refuses.
const (
	// MaxTypicalCost bounds the three policies together on TypicalPod at the
	// webhook's own cost. Measured on one API server (BenchmarkPolicyDryRunCreate in
	// integration/e2e, a loaded 2-core machine, 2026-12-03): the webhook's two calls
	// cost it 3.4 ms of admission per pod; the policies of the example config (2,520
	// units) 3.1 ms, of 10 pools (7,434 units) 9.7 ms, so a unit is about 1.2–1.3 µs
	// there and the webhook is worth about 3,000 units. Past that the policies are
	// slower than the webhook, and render says to use it.
	MaxTypicalCost = 3_000
	// MaxLargestCost bounds the mutation alone on LargestPod at half the API server's
	// per-call limit (k8s.io/apiserver/pkg/apis/cel PerCallLimit, 1,000,000), so no pod
	// within the limits can make the API server abort the evaluation and (with
	// failurePolicy Fail) refuse the pod.
	MaxLargestCost = 500_000
)

// Cost is the estimate of one rendering.
type Cost struct {
	Pools int
	// Typical is the three policies' cost on TypicalPod; Largest the mutation's on
	// LargestPod.
	Typical, Largest int
}

func (c Cost) String() string {
	return fmt.Sprintf("%d pools: typical pod %d units (bound %d), largest pod %d units (bound %d)",
		c.Pools, c.Typical, MaxTypicalCost, c.Largest, MaxLargestCost)
}

// Check refuses a rendering past the bounds, saying why and what to use instead;
// slowerOK skips MaxTypicalCost.
func (c Cost) Check(slowerOK bool) error {
	switch {
	case c.Typical > MaxTypicalCost && !slowerOK:
		return fmt.Errorf("the policies would cost the API server about %d CEL units per typical pod with %d pools, more than the webhook's two calls (about %d): use the webhook (serve) for this configuration, or --allow-slower-than-webhook",
			c.Typical, c.Pools, MaxTypicalCost)
	case c.Largest > MaxLargestCost:
		return fmt.Errorf("the mutation could cost %d CEL units on a pod with %d sysctls, past half the API server's per-call limit (bound %d), and such pods would be refused: use the webhook (serve) for this configuration",
			c.Largest, LargestPod.Sysctls, MaxLargestCost)
	}
	return nil
}

// Estimate models the cost of the rendered policies.
func Estimate(pools []pool, everywhere []string) Cost {
	return Cost{
		Pools:   len(pools),
		Typical: 3 * variablesCost(pools, everywhere, TypicalPod),
		Largest: variablesCost(pools, everywhere, LargestPod) + patchCost(pools, LargestPod),
	}
}

// variablesCost is the shared variables on a pod of shape s.
func variablesCost(pools []pool, everywhere []string, s Shape) int {
	nsNames := len(namespacedNames) + 2*len(namespacedPrefixes)
	c := 20 +
		s.Sysctls*12 + // normalise
		s.Sysctls*(nsNames+4) + // kernel namespace
		3*(s.Sysctls+6) + // clashes
		s.Sysctls*6 + // kept
		s.Sysctls*(len(everywhere)+4) // needsPlacing
	for i := range pools {
		p := &pools[i]
		k := len(p.selector)
		c += s.Sysctls*(len(p.allowed)+2*len(p.prefixes)+5) + // allows
			k*4 + // selects
			len(p.taints)*s.Tolerations*12 + // tolerates
			k*4 + 8 + 5*selectorTerms(p) + 4 + // candidate: compatible, poolList, namespaceSelector
			s.Terms*(s.Requirements*(4+k*8)+2) + // affinity
			s.Terms*k*(3+s.Requirements*5) + // placed
			len(p.allowed) + len(p.prefixes) + 10 // literal lists, the candidate list
	}
	return c
}

// patchCost is the mutation's own expression: the literal tables and the patches.
func patchCost(pools []pool, s Shape) int {
	c := 40
	for i := range pools {
		c += 6*len(pools[i].selector) + 8*len(pools[i].taints) + 6
	}
	return c + s.Terms*len(pools)*(s.Requirements+4)
}

// selectorTerms counts the requirements of a namespaceSelector.
func selectorTerms(p *pool) int {
	if p.nsSel == nil {
		return 0
	}
	return len(p.nsSel.MatchLabels) + len(p.nsSel.MatchExpressions)
}
