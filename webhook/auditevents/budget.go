package auditevents

// Per-namespace budgets: every tenant's Events are paid from its own token bucket, so
// one namespace that floods the webhook with placed or denied pods spends its own
// budget and leaves every other namespace's Events as prompt as before.

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Budget is a namespace's allowance of Events: Burst at once, then PerSecond.
type Budget struct {
	// PerSecond is the sustained rate.
	PerSecond float64
	// Burst is how many may come at once.
	Burst int
}

// maxBudgetedNamespaces bounds the buckets kept; a bucket that is full again carries
// no information and is forgotten first.
const maxBudgetedNamespaces = 4096

// namespaceBudgets holds one token bucket per namespace: golang.org/x/time/rate, the
// limiter client-go's workqueue.TypedBucketRateLimiter wraps, keyed by namespace
// instead of shared by every item.
type namespaceBudgets struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	// overflow is shared by the namespaces beyond maxBudgetedNamespaces: only when
	// thousands of namespaces are all spending at once.
	overflow *rate.Limiter
}

func newNamespaceBudgets(b Budget) *namespaceBudgets {
	return &namespaceBudgets{
		limit:    rate.Limit(b.PerSecond),
		burst:    b.Burst,
		buckets:  map[string]*rate.Limiter{},
		overflow: rate.NewLimiter(rate.Limit(b.PerSecond), b.Burst),
	}
}

// bucket returns namespace's bucket; b.mu must be held.
func (b *namespaceBudgets) bucket(namespace string, now time.Time) *rate.Limiter {
	if l, ok := b.buckets[namespace]; ok {
		return l
	}
	if len(b.buckets) >= maxBudgetedNamespaces {
		for ns, l := range b.buckets {
			if l.TokensAt(now) >= float64(b.burst) {
				delete(b.buckets, ns)
			}
		}
		if len(b.buckets) >= maxBudgetedNamespaces {
			return b.overflow
		}
	}
	l := rate.NewLimiter(b.limit, b.burst)
	b.buckets[namespace] = l
	return l
}

// allow spends one token of namespace's budget if it has one.
func (b *namespaceBudgets) allow(namespace string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bucket(namespace, now).AllowN(now, 1)
}

// reserve spends one token of namespace's budget and says how long to wait for it;
// false, spending nothing, when the wait would be longer than maxWait.
func (b *namespaceBudgets) reserve(namespace string, now time.Time, maxWait time.Duration) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.bucket(namespace, now).ReserveN(now, 1)
	if !r.OK() {
		return 0, false
	}
	if d := r.DelayFrom(now); d <= maxWait {
		return d, true
	}
	r.CancelAt(now)
	return 0, false
}
