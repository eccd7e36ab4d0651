package discovery

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
)

// Merge puts the config file's pools first and adds the discovered pools that do not
// collide with them: a config pool wins for its name and for its selector (an admin
// pins what discovery would guess), and config pools keep serving pools scaled to zero.
// Config pools selecting no node are reported, and a config pool that names no kubelet
// version gets one from the Nodes (see unversionedKubelet). The result is in placement
// order.
func Merge(static []scheduling.Pool, discovered []PoolStatus, nodes []*corev1.Node) []PoolStatus {
	out := make([]PoolStatus, 0, len(static)+len(discovered))
	names := map[string]bool{}
	selectors := map[string]string{}
	for _, p := range static {
		st := PoolStatus{Pool: p, Source: SourceConfig}
		sel := labels.SelectorFromSet(p.NodeSelector)
		var own []*corev1.Node
		for _, n := range nodes {
			if sel.Matches(labels.Set(n.Labels)) {
				own = append(own, n)
			}
		}
		st.Nodes = len(own)
		if p.KubeletVersion == "" {
			st.Pool.KubeletVersion = unversionedKubelet(own, nodes)
		}
		if st.Nodes == 0 {
			st.Problems = append(st.Problems, Problem{ProblemNoMatchingNodes, fmt.Sprintf("nodeSelector %s matches no node; fine for a pool scaled to zero, otherwise check the labels", sel)})
		}
		names[p.Name] = true
		selectors[sel.String()] = p.Name
		out = append(out, st)
	}
	for _, d := range discovered {
		sel := labels.SelectorFromSet(d.Pool.NodeSelector).String()
		switch {
		case names[d.Pool.Name]:
			d.Problems = append(d.Problems, Problem{ProblemOverriddenByConfig, fmt.Sprintf("the config pool %s is used instead", d.Pool.Name)})
		case selectors[sel] != "":
			d.Problems = append(d.Problems, Problem{ProblemOverriddenByConfig, fmt.Sprintf("the config pool %s has the same selector and is used instead", selectors[sel])})
		}
		sortProblems(d.Problems)
		out = append(out, d)
	}
	return out
}

// Restrict applies the config's discovery.pools to the discovered pools: each takes the
// namespaceSelector of the first entry matching its name, and with onlyListedPools a
// pool no entry matches is reported NotListed and left unused. The scheduling package
// then excludes a restricted pool for other namespaces as it does a config pool's. The
// input is not modified.
func Restrict(discovered []PoolStatus, d *scheduling.Discovery) []PoolStatus {
	if d == nil || (len(d.Pools) == 0 && !d.OnlyListedPools) {
		return discovered
	}
	out := make([]PoolStatus, len(discovered))
	for i, st := range discovered {
		st.Problems = slices.Clone(st.Problems)
		if r, ok := d.PoolRestriction(st.Pool.Name); ok {
			st.Pool.NamespaceSelector = r.NamespaceSelector.DeepCopy()
		} else if d.OnlyListedPools {
			st.Problems = append(st.Problems, Problem{ProblemNotListed, "discovery.onlyListedPools is set and no discovery.pools entry matches it; list it there to use it"})
			sortProblems(st.Problems)
		}
		out[i] = st
	}
	return out
}

// unversionedKubelet is the kubelet version of a config pool that names none. Unknown
// means the newest kubelet, and the newest is what the cluster runs, not what this
// build knows: the lowest version of the pool's own nodes when it has some (as for a
// discovered pool: a sysctl only its newer nodes allow would fail on the older ones),
// else the newest any Node reports (a pool scaled to zero gets nodes like the others).
// Without Nodes it stays empty: scheduling then assumes the newest kubelet it knows.
// So a pool is never credited with a safe sysctl no kubelet of the cluster allows.
func unversionedKubelet(own, all []*corev1.Node) string {
	if v, _ := lowestVersion(own, kubeletVersion); v != "" {
		return v
	}
	v, _ := highestVersion(all, kubeletVersion)
	return v
}

// Usable reports whether placement uses the pool: discovered pools overridden by the
// config, or invalid, are shown but not used.
func (s *PoolStatus) Usable() bool {
	for _, p := range s.Problems {
		if p.Kind == ProblemOverriddenByConfig || p.Kind == ProblemInvalidPool || p.Kind == ProblemNotListed {
			return false
		}
	}
	return true
}

// PlacementPools returns the pools placement uses, in order.
func PlacementPools(statuses []PoolStatus) []scheduling.Pool {
	var out []scheduling.Pool
	for i := range statuses {
		if statuses[i].Usable() {
			out = append(out, statuses[i].Pool)
		}
	}
	return out
}

// Compile builds the placement table from the merged pools under the config's policy.
// A discovered pool the scheduling package refuses is dropped (and reported in the
// returned statuses) rather than taking every other pool down with it.
func Compile(static *scheduling.Compiled, statuses []PoolStatus) (*scheduling.Compiled, []PoolStatus, error) {
	compiled, err := scheduling.CompilePools(static.Policy(), PlacementPools(statuses))
	if err == nil {
		return compiled, statuses, nil
	}
	for i := range statuses {
		if statuses[i].Source == SourceConfig || !statuses[i].Usable() {
			continue
		}
		if _, perr := scheduling.CompilePools(static.Policy(), []scheduling.Pool{statuses[i].Pool}); perr != nil {
			statuses[i].Problems = append(statuses[i].Problems, Problem{ProblemInvalidPool, perr.Error()})
			sortProblems(statuses[i].Problems)
		}
	}
	compiled, err = scheduling.CompilePools(static.Policy(), PlacementPools(statuses))
	if err != nil {
		return nil, statuses, fmt.Errorf("could not build the pool table from config and discovered pools: %w", err)
	}
	return compiled, statuses, nil
}

// Combiner sits between the config Watcher and the config Store (package
// webhook/config): it receives each valid
// static config (Set) and each discovery result (SetDiscovered), merges them and puts
// the result in force. Without discovery it passes the static config through as is.
type Combiner struct {
	cfg CombinerConfig

	mu         sync.Mutex
	static     *scheduling.Compiled
	discovered []PoolStatus
	nodes      []*corev1.Node
	haveNodes  bool
	report     []PoolStatus
	// logged holds the problems already logged, so each is logged once when it appears.
	logged map[string]bool
}

// CombinerConfig configures a Combiner.
type CombinerConfig struct {
	// Sink receives the merged placement table (required): the config Store the
	// webhooks read.
	Sink config.Sink
	// Metrics counts pool problems; nil counts nothing.
	Metrics *Metrics
	// Logger reports new problems and refused tables; nil logs nothing.
	Logger logrus.FieldLogger
}

func (c *CombinerConfig) defaults() error {
	if c.Sink == nil {
		return errors.New("a config sink is required")
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	return nil
}

// NewCombiner returns a Combiner that publishes to cfg.Sink.
func NewCombiner(cfg CombinerConfig) (*Combiner, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid combiner configuration: %w", err)
	}
	return &Combiner{cfg: cfg}, nil
}

// Set takes a newly loaded static config (it is a config.Sink).
func (c *Combiner) Set(static *scheduling.Compiled) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.static != nil && static != nil {
		// discovery.pools and onlyListedPools apply at the next merge (below); the
		// pool label and the allowlist source shape the running Discoverer.
		old, cur := c.static.Config().Discovery, static.Config().Discovery
		if (old == nil) != (cur == nil) || (old != nil && (old.PoolLabel != cur.PoolLabel || old.AllowlistFrom != cur.AllowlistFrom)) {
			c.cfg.Logger.Warn("the discovery section of the config changed; restart the webhook for it to take effect")
		}
	}
	c.static = static
	c.publishLocked()
}

// SetDiscovered takes a new discovery result and the nodes it was made from.
func (c *Combiner) SetDiscovered(pools []PoolStatus, nodes []*corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.discovered, c.nodes, c.haveNodes = pools, nodes, true
	c.publishLocked()
}

// Static returns the static config in force, or nil.
func (c *Combiner) Static() *scheduling.Compiled {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.static
}

// Report returns the pools as the webhook sees them, with their problems.
func (c *Combiner) Report() []PoolStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.report
}

func (c *Combiner) publishLocked() {
	if c.static == nil {
		return
	}
	if !c.haveNodes {
		// Before discovery's first result (or without discovery) the static config is
		// in force unchanged; readiness waits for discovery when it is configured.
		c.report = Merge(c.static.Pools(), nil, nil)
		for i := range c.report {
			c.report[i].Problems = nil // node counts are unknown, not zero
		}
		c.cfg.Sink.Set(c.static)
		return
	}
	merged := Merge(c.static.Pools(), Restrict(c.discovered, c.static.Config().Discovery), c.nodes)
	compiled, merged, err := Compile(c.static, merged)
	c.report = merged
	c.cfg.Metrics.observeReport(merged)
	c.logProblemsLocked(merged)
	if err != nil {
		c.cfg.Logger.WithError(err).Error("kept the previous pool table")
		return
	}
	c.cfg.Sink.Set(compiled)
}

func (c *Combiner) logProblemsLocked(report []PoolStatus) {
	seen := map[string]bool{}
	for i := range report {
		for _, p := range report[i].Problems {
			key := report[i].Pool.Name + "\x00" + string(p.Kind) + "\x00" + p.Detail
			seen[key] = true
			if !c.logged[key] {
				c.cfg.Logger.WithFields(logrus.Fields{"pool": report[i].Pool.Name, "problem": p.Kind}).Warn(p.Detail)
			}
		}
	}
	c.logged = seen
}
