package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
)

// Pools is where the webhook's pool table comes from, built once by NewPools for
// serve and for the `pools` and `audit` commands alike: the config file's static pools
// go through a Combiner into a config Store, and the Nodes add to them. With a
// discovery section a Discoverer groups the Nodes into pools and reads what their
// kubelets allow; without one a NodeCounter counts each config pool's nodes. serve
// keeps it current (Run); the commands take one pass (Load).
type Pools struct {
	store    *config.Store
	combiner *Combiner
	client   kubernetes.Interface
	// watcher loads the config file (nil without one).
	watcher *config.Watcher
	// discoverer is set with a discovery section, counter without one.
	discoverer *Discoverer
	counter    *NodeCounter
}

// PoolsConfig configures NewPools.
type PoolsConfig struct {
	// ConfigFile is the PlacementConfig file, loaded (and watched by Run) by a config
	// Watcher; empty: no static pools, and the pools are discovered.
	ConfigFile    string
	ConfigMetrics *config.Metrics
	// PoolLabel and AllowlistFrom override the config's discovery section and ask for
	// discovery without one (`pools --pool-label`); serve gives neither. A discovery
	// without a pool label takes the first of WellKnownPoolLabels a node carries.
	PoolLabel     string
	AllowlistFrom string
	// Client reads the Nodes (required).
	Client kubernetes.Interface
	// NewProber builds the kubelet prober, called only when allowlists are read from
	// /configz.
	NewProber func() (Prober, error)
	// Refresh, Workers, QPS, Share and Metrics are the Discoverer's (see Config);
	// Metrics counts the Combiner's pool problems too.
	Refresh      time.Duration
	Workers      int
	QPS          float64
	FirstPassQPS float64
	Share        *ShareConfig
	Metrics      *Metrics
	Logger       logrus.FieldLogger
}

// NewPools loads the static config and builds what adds the Nodes to it; ctx bounds
// finding a pool label when none is given.
func NewPools(ctx context.Context, cfg PoolsConfig) (*Pools, error) {
	if cfg.Client == nil {
		return nil, errors.New("discovery: a Kubernetes client is required")
	}
	p := &Pools{store: config.NewStore(nil), client: cfg.Client}
	var err error
	// The combiner merges the config file's pools with the discovered ones; without a
	// discovery section it passes the config through.
	p.combiner, err = NewCombiner(CombinerConfig{Sink: p.store, Metrics: cfg.Metrics, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if cfg.ConfigFile != "" {
		p.watcher, err = config.NewWatcher(config.WatcherConfig{Path: cfg.ConfigFile, Sink: p.combiner, Metrics: cfg.ConfigMetrics, Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
	} else {
		empty, err := scheduling.CompilePools(scheduling.Policy{}, nil)
		if err != nil {
			return nil, err
		}
		p.combiner.Set(empty)
	}
	section, err := cfg.discovery(ctx, p.combiner.Static().Config().Discovery)
	if err != nil {
		return nil, err
	}
	if p.discoverer, err = cfg.newDiscoverer(section, p.combiner); err != nil {
		return nil, err
	}
	if p.discoverer == nil {
		// Without discovery, still count each config pool's nodes, so a pool that
		// matches none is reported (log, sysctl_placement_pool_nodes, pools).
		if p.counter, err = NewNodeCounter(cfg.Client, p.combiner); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// discovery returns the discovery section in force: the config's, with PoolLabel and
// AllowlistFrom applied, or nil for none.
func (c *PoolsConfig) discovery(ctx context.Context, d *scheduling.Discovery) (*scheduling.Discovery, error) {
	if c.ConfigFile != "" && c.PoolLabel == "" && c.AllowlistFrom == "" {
		return d, nil
	}
	out := scheduling.Discovery{AllowlistFrom: scheduling.AllowlistFromConfigz}
	if d != nil {
		out = *d
	}
	if c.PoolLabel != "" {
		out.PoolLabel = c.PoolLabel
	}
	if c.AllowlistFrom != "" {
		out.AllowlistFrom = c.AllowlistFrom
	}
	if out.PoolLabel == "" {
		label, err := detectPoolLabel(ctx, c.Client)
		if err != nil {
			return nil, err
		}
		out.PoolLabel = label
	}
	return &out, nil
}

// newDiscoverer builds the Discoverer the discovery section asks for, or nil when
// there is none. Results go to publisher.
func (c *PoolsConfig) newDiscoverer(d *scheduling.Discovery, publisher Publisher) (*Discoverer, error) {
	if d == nil {
		return nil, nil
	}
	cfg := Config{
		Client:       c.Client,
		PoolLabel:    d.PoolLabel,
		Source:       Source(d.AllowlistFrom),
		Publisher:    publisher,
		Refresh:      c.Refresh,
		Workers:      c.Workers,
		QPS:          c.QPS,
		FirstPassQPS: c.FirstPassQPS,
		Share:        c.Share,
		Metrics:      c.Metrics,
		Logger:       c.Logger,
	}
	if cfg.Source == "" {
		cfg.Source = SourceConfigz
	}
	if cfg.Source == SourceConfigz && c.NewProber != nil {
		prober, err := c.NewProber()
		if err != nil {
			return nil, err
		}
		cfg.Prober = prober
	}
	return New(cfg)
}

// detectPoolLabel returns the first well-known pool label any node carries.
func detectPoolLabel(ctx context.Context, client kubernetes.Interface) (string, error) {
	for _, label := range WellKnownPoolLabels {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: label, Limit: 1})
		if err != nil {
			return "", fmt.Errorf("could not list nodes: %w", err)
		}
		if len(list.Items) > 0 {
			return label, nil
		}
	}
	return "", fmt.Errorf("no node carries any of %s: give the label that names your pools with --pool-label or discovery.poolLabel in --config", strings.Join(WellKnownPoolLabels, ", "))
}

// Store is the pool table in force, for the admission path.
func (p *Pools) Store() *config.Store { return p.store }

// Report returns the pools as the webhook sees them, with their problems.
func (p *Pools) Report() []PoolStatus { return p.combiner.Report() }

// NodeNames are the nodes discovery sees, nil without discovery.
func (p *Pools) NodeNames() []string {
	if p.discoverer == nil {
		return nil
	}
	return p.discoverer.informer.GetStore().ListKeys()
}

// FirstPassDone reports whether the pools may be used: always without discovery,
// else once the Discoverer's first pass is done.
func (p *Pools) FirstPassDone() bool { return p.discoverer == nil || p.discoverer.FirstPassDone() }

// Run keeps the pools current until ctx ends: it watches the config file and runs the
// Discoverer or the NodeCounter. The first of them to fail stops the others; its
// error names it.
func (p *Pools) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	run := func(name string, f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil {
				once.Do(func() { first = fmt.Errorf("%s: %w", name, err) })
				cancel()
			}
		})
	}
	if p.watcher != nil {
		run("config watcher", p.watcher.Run)
	}
	if p.discoverer != nil {
		run("pool discovery", p.discoverer.Run)
	}
	if p.counter != nil {
		run("node counter", p.counter.Run)
	}
	wg.Wait()
	return first
}

// Load takes one pass, as serve does at start-up: the Discoverer's first pass, or
// without discovery one list of the Nodes to count each config pool's.
func (p *Pools) Load(ctx context.Context) error {
	if p.discoverer == nil {
		return p.countNodes(ctx)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.discoverer.Run(runCtx) }()
	waitErr := p.discoverer.WaitForFirstPass(ctx)
	stop()
	runErr := <-done
	if waitErr != nil {
		return fmt.Errorf("%w (could the nodes be listed? check the kubeconfig and RBAC: list/watch nodes)", waitErr)
	}
	return runErr
}

// countNodes lists the Nodes page by page and gives them to the Combiner.
func (p *Pools) countNodes(ctx context.Context) error {
	var nodes []*corev1.Node
	err := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return p.client.CoreV1().Nodes().List(ctx, opts)
	}).EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		nodes = append(nodes, obj.(*corev1.Node))
		return nil
	})
	if err != nil {
		return fmt.Errorf("could not list nodes (check the kubeconfig and RBAC: list nodes): %w", err)
	}
	p.combiner.SetDiscovered(nil, nodes)
	return nil
}
