package scheduling

// This file turns a validated configuration into the lookup structures Plan runs on.
// Everything that does not depend on the pod is computed here once per config load, so
// that admission stays in microseconds however many pools there are.

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-helpers/node/util/sysctl"
)

// Compiled is a validated, defaulted configuration with everything precomputed. It is
// immutable and safe for concurrent use by any number of Plan calls; a config reload
// builds a new one.
type Compiled struct {
	config *PlacementConfig
	pools  []compiledPool
	// byName maps a pool name to its index, for the namespace "pools" annotation.
	byName map[string]int
	// everywhereSafe has the bit of each safe sysctl that every pool and a node outside
	// every pool (the newest kubelet) allow: a pod asking only for those needs no
	// placement.
	everywhereSafe uint64

	// The pool bitsets below answer "which pools allow sysctl s" with one map lookup
	// and a few word operations, instead of a lookup per pool: bit i of word i/64 is
	// pool i.
	words int
	// safePools[b] holds the pools whose kubelet allows safe sysctl b.
	safePools [len(safeSysctlTable)][]uint64
	// exactPools maps a normalised sysctl name to the pools listing it exactly.
	exactPools map[string][]uint64
	// prefixPools holds each distinct prefix pattern with the pools listing it.
	prefixPools []prefixPools
}

// prefixPools is one distinct allowedUnsafeSysctls prefix (the pattern without '*').
type prefixPools struct {
	prefix string
	pools  []uint64
}

// selectorEntry is one label of a pool's node selector.
type selectorEntry struct{ key, value string }

// compiledPool is a Pool with its lookups precomputed.
type compiledPool struct {
	pool *Pool
	name string
	// selector is the pool's nodeSelector sorted by key, for deterministic output.
	selector []selectorEntry
	// selectorString is "k=v,k2=v2", for messages.
	selectorString string
	// node is a synthetic node carrying only the selector labels, to evaluate a pod's
	// required node affinity "as far as decidable from labels".
	node *corev1.Node
	// taints are the pool's NoSchedule and NoExecute taints: the only ones that keep a
	// pod off a node (PreferNoSchedule does not).
	taints []corev1.Taint
	// safe has the bits of the built-in safe sysctls this pool's kubelet allows.
	safe uint64
	// exact and prefixes are the normalised allowedUnsafeSysctls.
	exact    map[string]struct{}
	prefixes []string
	// nsSelector is nil when every namespace may use the pool.
	nsSelector labels.Selector
}

// Compile defaults a copy of c, validates it and precomputes what Plan needs. The error
// wraps the aggregate of every field error, so its message lists every path to fix.
func Compile(c *PlacementConfig) (*Compiled, error) {
	if c == nil {
		return nil, fmt.Errorf("invalid placement config: no config given")
	}
	cfg := c.DeepCopy()
	cfg.Default()
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("invalid placement config: %w", errs.ToAggregate())
	}
	return compile(cfg)
}

// CompilePools builds a Compiled from a policy and a pool list that did not come from
// a config file, e.g. pools discovered from live Nodes merged with static ones. Zero
// pools are allowed here: a cluster may not have any pool nodes yet.
func CompilePools(policy Policy, pools []Pool) (*Compiled, error) {
	cfg := &PlacementConfig{
		TypeMeta: metav1.TypeMeta{APIVersion: ConfigAPIVersion, Kind: ConfigKind},
		Pools:    copyPools(pools),
		Policy:   policy,
	}
	cfg.Default()
	errs := validatePools(cfg.Pools, field.NewPath("pools"))
	errs = append(errs, cfg.Policy.validate(field.NewPath("policy"))...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid pools: %w", errs.ToAggregate())
	}
	return compile(cfg)
}

func compile(cfg *PlacementConfig) (*Compiled, error) {
	out := &Compiled{
		config: cfg,
		pools:  make([]compiledPool, len(cfg.Pools)),
		byName: make(map[string]int, len(cfg.Pools)),
	}
	out.everywhereSafe = newestSafeMask
	out.words = (len(cfg.Pools) + 63) / 64
	out.exactPools = map[string][]uint64{}
	for b := range out.safePools {
		out.safePools[b] = make([]uint64, out.words)
	}
	prefixAt := map[string]int{}
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		cp, err := compilePool(p)
		if err != nil {
			return nil, fmt.Errorf("pools[%d]: %w", i, err)
		}
		out.pools[i] = cp
		out.byName[p.Name] = i
		var allowed uint64
		for j, s := range safeSysctlTable {
			if cp.allows(s.name, uint(j), true) {
				allowed |= 1 << uint(j)
			}
		}
		out.everywhereSafe &= allowed
		word, bit := i/64, uint64(1)<<(uint(i)%64)
		for b := range safeSysctlTable {
			if cp.safe&(1<<uint(b)) != 0 {
				out.safePools[b][word] |= bit
			}
		}
		for name := range cp.exact {
			set := out.exactPools[name]
			if set == nil {
				set = make([]uint64, out.words)
				out.exactPools[name] = set
			}
			set[word] |= bit
		}
		for _, prefix := range cp.prefixes {
			k, ok := prefixAt[prefix]
			if !ok {
				k = len(out.prefixPools)
				prefixAt[prefix] = k
				out.prefixPools = append(out.prefixPools, prefixPools{prefix: prefix, pools: make([]uint64, out.words)})
			}
			out.prefixPools[k].pools[word] |= bit
		}
	}
	return out, nil
}

func compilePool(p *Pool) (compiledPool, error) {
	cp := compiledPool{pool: p, name: p.Name, exact: map[string]struct{}{}}
	for k, v := range p.NodeSelector {
		cp.selector = append(cp.selector, selectorEntry{k, v})
	}
	sort.Slice(cp.selector, func(i, j int) bool { return cp.selector[i].key < cp.selector[j].key })
	cp.selectorString = selectorString(p.NodeSelector)
	cp.node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Labels: p.NodeSelector}}
	for _, t := range p.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			cp.taints = append(cp.taints, t)
		}
	}
	kv, err := parseKubeletVersion(p.KubeletVersion)
	if err != nil {
		return cp, err
	}
	kn, err := parseKernelVersion(p.KernelVersion)
	if err != nil {
		return cp, err
	}
	cp.safe = safeMask(kv, kn)
	for _, s := range p.AllowedUnsafeSysctls {
		s = sysctl.NormalizeName(s)
		if prefix, ok := strings.CutSuffix(s, "*"); ok {
			cp.prefixes = append(cp.prefixes, prefix)
		} else {
			cp.exact[s] = struct{}{}
		}
	}
	if p.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
		if err != nil {
			return cp, fmt.Errorf("namespaceSelector: %w", err)
		}
		if !sel.Empty() {
			cp.nsSelector = sel
		}
	}
	return cp, nil
}

// allows reports whether the pool's kubelet admits the normalised, namespaced sysctl
// name. safeBit is its index in safeSysctlTable when isSafe.
func (p *compiledPool) allows(name string, safeBit uint, isSafe bool) bool {
	if isSafe && p.safe&(1<<safeBit) != 0 {
		return true
	}
	if _, ok := p.exact[name]; ok {
		return true
	}
	for _, prefix := range p.prefixes {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return false
}

// Pools returns the defaulted pools, in configuration order. Callers must not modify
// them.
func (c *Compiled) Pools() []Pool { return c.config.Pools }

// Policy returns the defaulted policy.
func (c *Compiled) Policy() Policy { return c.config.Policy }

// Config returns the defaulted configuration the table was built from. Callers must
// not modify it.
func (c *Compiled) Config() *PlacementConfig { return c.config }

// selectorString renders a selector as sorted "k=v,k2=v2".
func selectorString(sel map[string]string) string {
	return labels.SelectorFromSet(sel).String()
}

// namespaceOf returns the kernel namespace of a normalised sysctl name.
func namespaceOf(name string) sysctl.Namespace {
	ns, _, _ := sysctl.GetNamespace(name)
	return ns
}
