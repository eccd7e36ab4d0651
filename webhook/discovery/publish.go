package discovery

// With Config.Share, the probe results travel through one ConfigMap: the elected
// replica writes it (publish), every replica reads it (sharedChanged).

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
)

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
	if time.Now().Before(d.nextPublish) {
		return
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
	written, err := writeShared(ctx, d.cfg.Client, share, current, res)
	if err != nil {
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
	// Every replica receives and decodes each write: a large result is written at
	// most sharedWriteRate bytes a second, on top of the PublishInterval ticks.
	d.nextPublish = time.Now().Add(time.Duration(float64(written) / sharedWriteRate * float64(time.Second)))
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
