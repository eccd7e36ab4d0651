package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
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
	// Workers probe kubelets concurrently. Default 4.
	Workers int
	// QPS and Burst bound the probe rate over all workers. Default 20 and 40.
	QPS   float64
	Burst int
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
	// queue is the probe queue while this replica reads kubelets, else nil.
	queue      workqueue.TypedRateLimitingInterface[string]
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
	dirty     bool
	firstPass chan struct{}
	done      atomic.Bool
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

// probe reads every kubelet, then each again every Refresh and whenever its Node says
// so, until ctx ends. With Share it runs while this replica is elected: it starts from
// the shared result (so nothing regresses to unknown while it reads again) and
// publishes what it reads.
func (d *Discoverer) probe(ctx context.Context) {
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](2*time.Second, d.cfg.Refresh),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "sysctl-placement-configz"})
	limiter := rate.NewLimiter(rate.Limit(d.cfg.QPS), d.cfg.Burst)
	keys := d.informer.GetStore().ListKeys()
	d.mu.Lock()
	d.queue = queue
	d.pending = map[string]bool{}
	inherited := d.cfg.Share != nil && d.sharedResult != nil && d.sharedResult.Complete
	if !inherited {
		for _, name := range keys {
			d.pending[name] = true
		}
	}
	if d.cfg.Share != nil {
		d.allowlists = maps.Clone(d.shared)
		if d.allowlists == nil {
			d.allowlists = map[string]Allowlist{}
		}
		d.leaderComplete = inherited
		d.dirty = true
	}
	d.mu.Unlock()
	for _, name := range keys {
		queue.Add(name)
	}
	if d.cfg.Share != nil {
		d.cfg.Logger.WithField("nodes", len(keys)).Info("discovery: elected; reading every kubelet for all replicas")
		d.cfg.Metrics.setLeader(true)
		defer d.cfg.Metrics.setLeader(false)
	}
	d.checkFirstPass()

	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() {
			for d.probeNext(ctx, queue, limiter) {
			}
		})
	}
	defer func() {
		queue.ShutDown()
		wg.Wait()
		d.mu.Lock()
		d.queue = nil
		d.mu.Unlock()
	}()
	refresh := time.NewTicker(d.cfg.Refresh)
	defer refresh.Stop()
	var publish <-chan time.Time
	if d.cfg.Share != nil {
		t := time.NewTicker(d.cfg.Share.PublishInterval)
		defer t.Stop()
		publish = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			for _, name := range d.informer.GetStore().ListKeys() {
				queue.Add(name)
			}
		case <-publish:
			d.publish(ctx)
		}
	}
}

// probeNext reads one kubelet; false once the queue shuts down.
func (d *Discoverer) probeNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], limiter *rate.Limiter) bool {
	name, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(name)
	obj, exists, err := d.informer.GetStore().GetByKey(name)
	if err != nil || !exists {
		queue.Forget(name)
		return true
	}
	node := obj.(*corev1.Node)
	if err := limiter.Wait(ctx); err != nil {
		return true // ctx ended
	}
	patterns, err := d.cfg.Prober.Probe(ctx, node)
	if ctx.Err() != nil {
		return true // leadership or the process ended: the read may be cut short
	}
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
		d.readAt[name] = time.Now()
	}
	d.dirty = true
	d.donePendingLocked(name)
	d.mu.Unlock()
	if err != nil {
		if prev.Known {
			d.cfg.Logger.WithError(err).WithField("node", name).Warn("could not read the kubelet's /configz; keeping its last known allowlist")
		} else {
			d.cfg.Logger.WithError(err).WithField("node", name).Warn("could not read the kubelet's /configz; its pool allows only what its other nodes allow")
		}
		queue.AddRateLimited(name)
	} else {
		queue.Forget(name)
	}
	if d.cfg.Share == nil {
		// Sharing, the pools change when the published result comes back.
		d.signal()
	}
	d.checkFirstPass()
	return true
}

func (d *Discoverer) donePendingLocked(name string) {
	delete(d.pending, name)
}

func (d *Discoverer) checkFirstPass() {
	d.mu.Lock()
	empty := d.pending != nil && len(d.pending) == 0
	if empty && d.cfg.Share != nil {
		// Sharing: replicas (this one too) are ready once they read a complete result;
		// the next publish marks it so.
		if !d.leaderComplete {
			d.leaderComplete, d.dirty = true, true
			d.cfg.Logger.Info("discovery: read every kubelet once; publishing a complete result")
		}
		d.mu.Unlock()
		return
	}
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

// publish writes the probe results to the shared ConfigMap when they changed since the
// last write. A failed write is tried again at the next tick; a missing ConfigMap is
// logged once and counted at every tick (sysctl_placement_discovery_shared_write_failures_total),
// since only re-applying the manifests brings it back.
func (d *Discoverer) publish(ctx context.Context) {
	share := d.cfg.Share
	var current *corev1.ConfigMap
	if obj, ok, _ := d.sharedInformer.GetStore().GetByKey(share.Namespace + "/" + share.Name); ok {
		current, _ = obj.(*corev1.ConfigMap)
	}
	d.mu.Lock()
	if !d.dirty && current != nil {
		d.mu.Unlock()
		return
	}
	d.dirty = false
	allowlists, readAt := maps.Clone(d.allowlists), maps.Clone(d.readAt)
	complete := d.leaderComplete
	d.mu.Unlock()
	res := encodeShared(cachedNodes(d.informer.GetStore()), d.cfg.PoolLabel, allowlists, readAt, share.Identity, complete, time.Now())
	if err := writeShared(ctx, d.cfg.Client, share, current, res); err != nil {
		if ctx.Err() == nil {
			missing := errors.Is(err, errSharedMissing)
			d.cfg.Metrics.observeSharedWriteFailure(missing)
			switch {
			case !missing:
				d.cfg.Logger.WithError(err).Warn("discovery: could not publish the shared result; trying again")
			case !d.sharedMissingLogged.Swap(true):
				d.cfg.Logger.WithError(err).Error("discovery: cannot publish the shared result; trying again")
			}
		}
		d.mu.Lock()
		d.dirty = true
		d.mu.Unlock()
		return
	}
	d.sharedMissingLogged.Store(false)
	d.cfg.Metrics.observePublish()
}

// sharedChanged takes in the shared result as the ConfigMap informer has it now. A
// replica is ready once it has read a complete one; a missing, empty (as shipped) or
// unreadable one leaves the last allowlists in force (like unreachable kubelets), and
// the elected replica writes it again (a missing one once the manifests are re-applied).
func (d *Discoverer) sharedChanged() {
	share := d.cfg.Share
	obj, exists, _ := d.sharedInformer.GetStore().GetByKey(share.Namespace + "/" + share.Name)
	cm, _ := obj.(*corev1.ConfigMap)
	if !exists || cm == nil {
		d.mu.Lock()
		d.sharedResult, d.dirty = nil, true
		d.mu.Unlock()
		return
	}
	res, err := parseShared(cm)
	if err != nil {
		d.cfg.Logger.WithError(err).Error("discovery: ignoring the shared result")
		d.cfg.Metrics.observeSharedIgnored(ignoredInvalid)
	}
	if res == nil {
		// Unreadable, or nothing published yet (as shipped): the elected replica, if it
		// is this one, writes its result at its next tick.
		d.mu.Lock()
		d.dirty = true
		d.mu.Unlock()
		return
	}
	holder, err := leaseHolder(d.runCtx, d.cfg.Client, share)
	if err != nil {
		if d.runCtx.Err() == nil {
			// The result stays unread until the Lease can be read: check again soon
			// rather than wait for the next write.
			d.cfg.Logger.WithError(err).Warn("discovery: keeping the last shared result; trying again")
			time.AfterFunc(leaseRetry, func() {
				if d.runCtx.Err() == nil {
					d.sharedChanged()
				}
			})
		}
		return
	}
	if res.Leader != holder {
		d.cfg.Logger.WithFields(logrus.Fields{"writtenBy": res.Leader, "leaseHolder": holder, "publishedAt": res.PublishedAt.String()}).
			Warn("discovery: ignoring a shared result not written by the holder of Lease " + share.Namespace + "/" + share.Lease + "; keeping the last one")
		d.cfg.Metrics.observeSharedIgnored(ignoredNotLeaseHolder)
		d.mu.Lock()
		d.dirty = true // the holder, if it is this replica, writes its own again
		d.mu.Unlock()
		return
	}
	d.mu.Lock()
	d.sharedResult, d.shared = res, res.decode()
	d.mu.Unlock()
	d.cfg.Metrics.observeShared(res.PublishedAt.Time)
	d.signal()
	if res.Complete && d.synced.Load() && !d.done.Load() {
		d.rebuild()
		if d.done.CompareAndSwap(false, true) {
			close(d.firstPass)
			d.cfg.Logger.WithFields(logrus.Fields{"leader": res.Leader, "publishedAt": res.PublishedAt.String()}).Info("discovery: read the shared result; ready")
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
	if d.cfg.Share != nil {
		// A node the shared result does not name is not read yet: its pool allows only
		// what its read nodes allow, and nothing if it has none.
		return d.shared[n.Name]
	}
	return d.allowlists[n.Name]
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
