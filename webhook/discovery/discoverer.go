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
	// Workers probe kubelets concurrently. Default 16: enough for FirstPassQPS with
	// kubelets answering in up to 80 ms; the rate limit, not the workers, bounds load.
	Workers int
	// QPS and Burst bound the probe rate over all workers once every kubelet has been
	// read. Default 20 and 40.
	QPS   float64
	Burst int
	// FirstPassQPS bounds the probe rate of the first pass, while this replica reads
	// every kubelet for the first time and no pool can be trusted yet (an elected
	// replica that takes over a complete shared result has no first pass). Default
	// 200: 5,000 nodes in 25 s. Each read costs the API server at most a TokenReview
	// and a SubjectAccessReview from the kubelet (it caches both), so at most 400
	// such requests a second, for that long, on a cluster of that size; then QPS.
	FirstPassQPS float64
	// Resync is the Node informer's resync period. Default 0 (none).
	Resync time.Duration
	// Batch is how long a change waits for more before the pools are rebuilt, so a
	// burst of 5,000 probe results costs a few rebuilds, not 5,000. Default 100ms.
	Batch time.Duration
	// Share, when set, makes one elected replica read the kubelets and publish the
	// result for all replicas (see ShareConfig); nil reads every kubelet from this
	// replica, as `sysctl-placement pools` and a single replica do.
	Share   *ShareConfig
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
		c.Workers = 16
	}
	if c.QPS <= 0 {
		c.QPS = 20
	}
	if c.Burst <= 0 {
		c.Burst = 40
	}
	if c.FirstPassQPS <= 0 {
		c.FirstPassQPS = 200
	}
	c.FirstPassQPS = max(c.FirstPassQPS, c.QPS)
	if c.Batch <= 0 {
		c.Batch = 100 * time.Millisecond
	}
	if c.Share != nil && c.Source == SourceConfigz {
		if err := c.Share.defaults(); err != nil {
			return err
		}
	} else {
		c.Share = nil // annotations are read from each replica's own Node cache
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
//
// With Config.Share only the elected replica reads kubelets; it publishes what they
// allow in one ConfigMap, and every replica (the elected one too) takes the allowlists
// from that ConfigMap's informer, so all of them place pods alike.
type Discoverer struct {
	cfg      Config
	informer cache.SharedIndexInformer
	// sharedInformer watches the shared result (nil without Share).
	sharedInformer cache.SharedIndexInformer
	regroup        chan struct{}

	mu sync.Mutex
	// queue is the probe queue while this replica reads kubelets, else nil; limiter
	// bounds its reads, at FirstPassQPS until the first pass is done, then QPS.
	queue      workqueue.TypedRateLimitingInterface[string]
	limiter    *rate.Limiter
	allowlists map[string]Allowlist
	// readAt is when each kubelet was last read successfully (published when sharing).
	readAt map[string]time.Time
	// pending holds the nodes of the first pass not probed yet.
	pending map[string]bool
	// shared is what the last shared result says each node allows; sharedResult is
	// that result (nil before one was read).
	shared       map[string]Allowlist
	sharedResult *SharedResult
	// leaderComplete: this replica, leading, has read every node once.
	leaderComplete bool
	// dirty: probe results not yet published.
	dirty bool
	// nextPublish: no write of the shared result before it (publish's write-rate
	// bound); touched only by the leading loop, which alone publishes.
	nextPublish time.Time
	firstPass   chan struct{}
	done        atomic.Bool
	// synced: the informers have synced, so a rebuild sees every Node.
	synced atomic.Bool
	// runCtx is Run's context, set before the informers start: it bounds the Lease
	// reads of sharedChanged, which runs in informer callbacks.
	runCtx context.Context
	// sharedMissingLogged: publish has logged that the ConfigMap is missing, once until
	// a write succeeds again (it tries every PublishInterval; the metric counts each).
	sharedMissingLogged atomic.Bool
}

// leaseRetry is how soon a shared result is checked again when the Lease could not be
// read.
const leaseRetry = 5 * time.Second

// New builds a Discoverer; call Run.
func New(cfg Config) (*Discoverer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	informer, err := nodeInformer(cfg.Client, cfg.Resync)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	d := &Discoverer{
		cfg:        cfg,
		informer:   informer,
		regroup:    make(chan struct{}, 1),
		allowlists: map[string]Allowlist{},
		readAt:     map[string]time.Time{},
		firstPass:  make(chan struct{}),
	}
	_, err = d.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
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
				delete(d.readAt, n.Name)
				d.donePendingLocked(n.Name)
				d.dirty = true
				d.mu.Unlock()
				d.signal()
				d.checkFirstPass()
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if cfg.Share != nil {
		d.sharedInformer = newSharedInformer(cfg.Client, cfg.Share)
		changed := func(any) { d.sharedChanged() }
		_, err := d.sharedInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: changed, DeleteFunc: changed,
			UpdateFunc: func(_, obj any) { changed(obj) },
		})
		if err != nil {
			return nil, fmt.Errorf("discovery: %w", err)
		}
	}
	return d, nil
}

func (d *Discoverer) nodeChanged(old, cur *corev1.Node) {
	if d.cfg.Source == SourceConfigz && needsProbe(old, cur) {
		d.mu.Lock()
		if d.queue != nil {
			d.queue.Add(cur.Name)
		}
		d.mu.Unlock()
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

// Run starts the informers, the probe workers (with Share, only while this replica is
// elected) and the periodic refresh, and blocks until ctx ends.
func (d *Discoverer) Run(ctx context.Context) error {
	d.runCtx = ctx
	running := []cache.SharedIndexInformer{d.informer}
	if d.cfg.Share != nil {
		running = append(running, d.sharedInformer)
	}
	defer startInformers(ctx, running...)()
	synced := []cache.InformerSynced{d.informer.HasSynced}
	if d.cfg.Share != nil {
		synced = append(synced, d.sharedInformer.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx ended
	}
	d.synced.Store(true)
	var wg sync.WaitGroup
	defer wg.Wait()
	switch {
	case d.cfg.Source != SourceConfigz:
		d.mu.Lock()
		d.pending = map[string]bool{}
		d.mu.Unlock()
		d.checkFirstPass()
	case d.cfg.Share == nil:
		wg.Go(func() { d.probe(ctx) })
	default:
		d.sharedChanged()
		wg.Go(func() {
			if err := d.cfg.Share.Elect(ctx, d.probe); err != nil {
				d.cfg.Logger.WithError(err).Error("discovery: the leader election stopped; this replica only follows the shared result")
			}
		})
	}

	d.rebuild()
	batch := time.NewTimer(0)
	<-batch.C
	batching := false
	for {
		select {
		case <-ctx.Done():
			return nil
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

// rebuild groups the cached nodes into pools and publishes them.
func (d *Discoverer) rebuild() {
	nodes := cachedNodes(d.informer.GetStore())
	d.cfg.Metrics.observeNodes(len(nodes))
	pools := Group(nodes, GroupOptions{PoolLabel: d.cfg.PoolLabel, Source: d.cfg.Source, Allowlist: d.allowlist})
	d.cfg.Publisher.SetDiscovered(pools, nodes)
}

// FirstPassDone reports whether the webhook may be ready: every node present at
// start-up has been read once (successfully or not) and the result published, or, with
// Share, a complete shared result has been read.
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
