package discovery

// The probe loop: a rate-limited work queue reads each kubelet's allowlist, again
// every Refresh and whenever its Node says so, and says when the first pass is done.

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
)

// probe reads every kubelet, then each again every Refresh and whenever its Node says
// so, until ctx ends. With Share it runs while this replica is elected: it starts from
// the shared result (so nothing regresses to unknown while it reads again) and
// publishes what it reads.
func (d *Discoverer) probe(ctx context.Context) {
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](2*time.Second, d.cfg.Refresh),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "sysctl-placement-configz"})
	keys := d.informer.GetStore().ListKeys()
	d.mu.Lock()
	d.queue = queue
	d.pending = map[string]bool{}
	inherited := d.cfg.Share != nil && d.sharedResult != nil && d.sharedResult.Complete
	limiter := rate.NewLimiter(rate.Limit(d.cfg.QPS), d.cfg.Burst)
	if !inherited {
		for _, name := range keys {
			d.pending[name] = true
		}
		// The first pass: nothing can be trusted until every kubelet is read.
		limiter = rate.NewLimiter(rate.Limit(d.cfg.FirstPassQPS), max(d.cfg.Burst, int(d.cfg.FirstPassQPS)))
	}
	d.limiter = limiter
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
		d.queue, d.limiter = nil, nil
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
			// Published at least once a Refresh even when no read comes back (no
			// nodes, every worker stuck): the result's age stays below 3 Refresh while a
			// replica leads, which the DiscoveryResultStale alert relies on.
			d.mu.Lock()
			d.dirty = true
			d.mu.Unlock()
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
	prev, had := d.allowlists[name]
	next := Allowlist{Known: true, Patterns: patterns}
	if err != nil {
		// An unreachable kubelet keeps its last known allowlist: a node that is
		// restarting or briefly partitioned has not changed what it allows.
		next = prev
		next.Err = err
	} else {
		d.readAt[name] = time.Now()
	}
	d.allowlists[name] = next
	// Only a read that changes the result is worth a write of its own: read again
	// unchanged, a kubelet's new read time rides on the next write, at the latest the
	// one every Refresh, so the steady refresh costs no writes.
	if !had || !sameAllowlist(prev, next) {
		d.dirty = true
	}
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

// sameAllowlist: a and b publish alike.
func sameAllowlist(a, b Allowlist) bool {
	return a.Known == b.Known && slices.Equal(a.Patterns, b.Patterns) && (a.Err == nil) == (b.Err == nil) && (a.Err == nil || a.Err.Error() == b.Err.Error())
}

func (d *Discoverer) donePendingLocked(name string) {
	delete(d.pending, name)
}

func (d *Discoverer) checkFirstPass() {
	d.mu.Lock()
	empty := d.pending != nil && len(d.pending) == 0
	if empty && d.limiter != nil && d.limiter.Limit() != rate.Limit(d.cfg.QPS) {
		// Every kubelet is read: from now on, the gentle steady rate.
		d.limiter.SetLimit(rate.Limit(d.cfg.QPS))
		d.limiter.SetBurst(d.cfg.Burst)
	}
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

// probeRate is the current limit on kubelet reads per second (0 while not reading).
func (d *Discoverer) probeRate() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.limiter == nil {
		return 0
	}
	return float64(d.limiter.Limit())
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
