package discovery

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Prober reads what a node's kubelet allows. ConfigzProber is the real one.
type Prober interface {
	Probe(ctx context.Context, node *corev1.Node) ([]string, error)
}

// Publisher receives each discovery result; Combiner is one.
type Publisher interface {
	SetDiscovered(pools []PoolStatus, nodes []*corev1.Node)
}

// Config configures a Discoverer. Client, PoolLabel, Source and Publisher are
// required; Prober is required for SourceConfigz.
type Config struct {
	Client    kubernetes.Interface
	PoolLabel string
	Source    Source
	Prober    Prober
	Publisher Publisher
	// Refresh is how often every kubelet is read again. Default 5m.
	Refresh time.Duration
	// Workers probe kubelets concurrently. Default 4.
	Workers int
	// QPS and Burst bound the probe rate over all workers. Default 20 and 40.
	QPS   float64
	Burst int
	// Resync is the Node informer's resync period. Default 0 (none).
	Resync time.Duration
	// Batch is how long a change waits for more before the pools are rebuilt, so a
	// burst of 5,000 probe results costs a few rebuilds, not 5,000. Default 100ms.
	Batch   time.Duration
	Metrics *Metrics
	Logger  logrus.FieldLogger
}

func (c *Config) defaults() error {
	switch {
	case c.Client == nil:
		return fmt.Errorf("discovery: a Kubernetes client is required")
	case c.PoolLabel == "":
		return fmt.Errorf("discovery: a pool label is required (discovery.poolLabel)")
	case c.Publisher == nil:
		return fmt.Errorf("discovery: a publisher is required")
	case c.Source != SourceConfigz && c.Source != SourceAnnotation:
		return fmt.Errorf("discovery: allowlistFrom %q is not supported: use configz or annotation", c.Source)
	case c.Source == SourceConfigz && c.Prober == nil:
		return fmt.Errorf("discovery: allowlistFrom configz needs a kubelet prober")
	}
	if c.Refresh <= 0 {
		c.Refresh = 5 * time.Minute
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.QPS <= 0 {
		c.QPS = 20
	}
	if c.Burst <= 0 {
		c.Burst = 40
	}
	if c.Batch <= 0 {
		c.Batch = 100 * time.Millisecond
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	return nil
}

// Discoverer keeps the discovered pools up to date: a Node informer (trimmed by
// TrimNode) groups nodes into pools, and a bounded, rate-limited work queue reads each
// kubelet's allowlist when its Node appears, restarts or changes address or version,
// and every Refresh. Results go to the Publisher; nothing here is on the admission path.
type Discoverer struct {
	cfg      Config
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	queue    workqueue.TypedRateLimitingInterface[string]
	limiter  *rate.Limiter
	regroup  chan struct{}

	mu         sync.Mutex
	allowlists map[string]Allowlist
	// pending holds the nodes of the first pass not probed yet.
	pending   map[string]bool
	firstPass chan struct{}
	done      atomic.Bool
}

// New builds a Discoverer; call Run.
func New(cfg Config) (*Discoverer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync, informers.WithTransform(TrimNode))
	d := &Discoverer{
		cfg:      cfg,
		factory:  factory,
		informer: factory.Core().V1().Nodes().Informer(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](2*time.Second, cfg.Refresh),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "sysctl-placement-configz"}),
		limiter:    rate.NewLimiter(rate.Limit(cfg.QPS), cfg.Burst),
		regroup:    make(chan struct{}, 1),
		allowlists: map[string]Allowlist{},
		firstPass:  make(chan struct{}),
	}
	_, err := d.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				d.nodeChanged(nil, n)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			old, ok1 := oldObj.(*corev1.Node)
			n, ok2 := obj.(*corev1.Node)
			if ok1 && ok2 {
				d.nodeChanged(old, n)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				d.mu.Lock()
				delete(d.allowlists, n.Name)
				d.donePendingLocked(n.Name)
				d.mu.Unlock()
				d.signal()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	return d, nil
}

func (d *Discoverer) nodeChanged(old, cur *corev1.Node) {
	if d.cfg.Source == SourceConfigz && needsProbe(old, cur) {
		d.queue.Add(cur.Name)
	}
	if needsRegroup(old, cur) {
		d.signal()
	}
}

func (d *Discoverer) signal() {
	select {
	case d.regroup <- struct{}{}:
	default:
	}
}

// Run starts the informer, the probe workers and the periodic refresh, and blocks
// until ctx ends.
func (d *Discoverer) Run(ctx context.Context) error {
	defer d.queue.ShutDown()
	d.factory.Start(ctx.Done())
	defer d.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), d.informer.HasSynced) {
		return nil // ctx ended
	}
	d.mu.Lock()
	d.pending = map[string]bool{}
	if d.cfg.Source == SourceConfigz {
		for _, name := range d.informer.GetStore().ListKeys() {
			d.pending[name] = true
		}
	}
	d.mu.Unlock()
	d.checkFirstPass()

	var wg sync.WaitGroup
	if d.cfg.Source == SourceConfigz {
		for range d.cfg.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for d.probeNext(ctx) {
				}
			}()
		}
	}
	d.rebuild()
	refresh := time.NewTicker(d.cfg.Refresh)
	defer refresh.Stop()
	batch := time.NewTimer(0)
	<-batch.C
	batching := false
	for {
		select {
		case <-ctx.Done():
			d.queue.ShutDown()
			wg.Wait()
			return nil
		case <-refresh.C:
			if d.cfg.Source == SourceConfigz {
				for _, name := range d.informer.GetStore().ListKeys() {
					d.queue.Add(name)
				}
			}
		case <-d.regroup:
			if !batching {
				batching = true
				batch.Reset(d.cfg.Batch)
			}
		case <-batch.C:
			batching = false
			d.rebuild()
		}
	}
}

// probeNext reads one kubelet; false once the queue shuts down.
func (d *Discoverer) probeNext(ctx context.Context) bool {
	name, shutdown := d.queue.Get()
	if shutdown {
		return false
	}
	defer d.queue.Done(name)
	obj, exists, err := d.informer.GetStore().GetByKey(name)
	if err != nil || !exists {
		d.queue.Forget(name)
		return true
	}
	node := obj.(*corev1.Node)
	if err := d.limiter.Wait(ctx); err != nil {
		return true // ctx ended
	}
	patterns, err := d.cfg.Prober.Probe(ctx, node)
	d.cfg.Metrics.observeProbe(err)
	d.mu.Lock()
	prev := d.allowlists[name]
	if err != nil {
		// An unreachable kubelet keeps its last known allowlist: a node that is
		// restarting or briefly partitioned has not changed what it allows.
		prev.Err = err
		d.allowlists[name] = prev
	} else {
		d.allowlists[name] = Allowlist{Known: true, Patterns: patterns}
	}
	d.donePendingLocked(name)
	d.mu.Unlock()
	if err != nil {
		if prev.Known {
			d.cfg.Logger.WithError(err).WithField("node", name).Warn("could not read the kubelet's /configz; keeping its last known allowlist")
		} else {
			d.cfg.Logger.WithError(err).WithField("node", name).Warn("could not read the kubelet's /configz; its pool allows only what its other nodes allow")
		}
		if ctx.Err() == nil {
			d.queue.AddRateLimited(name)
		}
	} else {
		d.queue.Forget(name)
	}
	d.signal()
	d.checkFirstPass()
	return true
}

func (d *Discoverer) donePendingLocked(name string) {
	delete(d.pending, name)
}

func (d *Discoverer) checkFirstPass() {
	d.mu.Lock()
	empty := d.pending != nil && len(d.pending) == 0
	d.mu.Unlock()
	if empty && !d.done.Load() {
		// Publish the complete first result before reporting ready.
		d.rebuild()
		if d.done.CompareAndSwap(false, true) {
			close(d.firstPass)
			d.cfg.Logger.Info("discovery finished its first pass")
		}
	}
}

// rebuild groups the cached nodes into pools and publishes them.
func (d *Discoverer) rebuild() {
	nodes := cachedNodes(d.informer.GetStore())
	d.cfg.Metrics.observeNodes(len(nodes))
	pools := Group(nodes, GroupOptions{PoolLabel: d.cfg.PoolLabel, Source: d.cfg.Source, Allowlist: d.allowlist})
	d.cfg.Publisher.SetDiscovered(pools, nodes)
}

func (d *Discoverer) allowlist(n *corev1.Node) Allowlist {
	if d.cfg.Source == SourceAnnotation {
		return AnnotationAllowlist(n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.allowlists[n.Name]
}

// FirstPassDone reports whether every node present at start-up has been read once
// (successfully or not) and the result published: until then the webhook is not ready.
func (d *Discoverer) FirstPassDone() bool { return d.done.Load() }

// WaitForFirstPass blocks until FirstPassDone or ctx ends.
func (d *Discoverer) WaitForFirstPass(ctx context.Context) error {
	select {
	case <-d.firstPass:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("discovery did not finish its first pass: %w", ctx.Err())
	}
}
