package discovery

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// SharedName is the ConfigMap, in the webhook's namespace, in which the elected replica
// publishes what the kubelets allow for every replica.
const SharedName = "sysctl-placement-discovery"

// SharedBinaryKey is the ConfigMap binaryData key holding the SharedResult as gzip'd
// JSON. Node names are most of a result and compress well (a pool's names share a
// prefix), so 65,000 nodes fit in one object: docs/design.md, "Discovery".
const SharedBinaryKey = "allowlists.json.gz"

// SharedKey is the ConfigMap data key of the SharedResult as plain JSON, which releases
// before SharedBinaryKey wrote. It is still read, for one release, so that during a
// rolling upgrade a replica of this release takes the result of an elected replica of
// the last; a write of this release removes it.
const SharedKey = "allowlists.json"

// maxSharedBytes is the API server's limit on a ConfigMap's data and binaryData
// together (1 MiB; core validation's MaxSecretSize, which ConfigMaps share).
const maxSharedBytes = 1 << 20

// sharedWriteRate bounds the bytes a second the elected replica writes to the shared
// ConfigMap, and so what the API server stores and sends every replica: the result
// changes often only during a first pass, and a 65,000-node result (about 615 kB, see
// docs/design.md) is then written every 6 s rather than every PublishInterval.
const sharedWriteRate = 100_000

// maxSharedJSON bounds what a reader inflates: far above any result that compresses
// under maxSharedBytes (65,000 nodes take about 3 MB of JSON), so only a corrupt or
// hostile object reaches it.
const maxSharedJSON = 64 << 20

// ShareConfig makes one elected replica read every kubelet and publish the result in
// one ConfigMap that every replica watches, instead of each replica reading every
// kubelet: a replica is ready as soon as it has read that object (its start-up no
// longer grows with the node count), and the kubelets, and the TokenReviews and
// SubjectAccessReviews they send the API server, see one prober however many replicas
// run.
type ShareConfig struct {
	// Namespace holds the ConfigMap (required): the webhook's own namespace.
	Namespace string
	// Name of the ConfigMap. Default SharedName.
	Name string
	// Identity of this replica, written into the result it publishes (required).
	Identity string
	// Elect runs lead while this replica is the elected one and competes again after
	// that, until ctx ends; lead returns when its context ends (required; serve passes
	// the audit Events' Lease election, on a Lease of its own).
	Elect func(ctx context.Context, lead func(context.Context)) error
	// PublishInterval is the least time between two writes of the ConfigMap, so a pass
	// over 5,000 kubelets costs a few dozen writes, not 5,000; a large result waits
	// longer (sharedWriteRate). Only a change is written, and the result once every
	// Refresh so its age tells whether a replica leads. Default 2s.
	PublishInterval time.Duration
	// Lease is the Lease Elect competes for, in Namespace (default SharedName). A
	// replica takes a published result only if its leader holds that Lease when the
	// result is read: a replica that lost the Lease but still writes, or anyone else
	// who can write the ConfigMap, cannot decide the allowlists.
	Lease string
}

func (c *ShareConfig) defaults() error {
	switch {
	case c.Namespace == "":
		return errors.New("discovery: sharing needs the webhook's namespace (--leader-election-namespace)")
	case c.Identity == "":
		return errors.New("discovery: sharing needs this replica's identity")
	case c.Elect == nil:
		return errors.New("discovery: sharing needs a leader election")
	}
	if c.Name == "" {
		c.Name = SharedName
	}
	if c.Lease == "" {
		c.Lease = SharedName
	}
	if c.PublishInterval <= 0 {
		c.PublishInterval = 2 * time.Second
	}
	return nil
}

// SharedResult is what the elected replica publishes: every kubelet's allowlist as
// last read, grouped by pool. Only probe results are shared; taints, versions and the
// grouping itself come from each replica's own Node cache, so every replica computes
// the pools, their disagreements and their problems with the same code as without
// sharing, and a node the result does not name is a node not read yet.
type SharedResult struct {
	// Leader is the identity of the replica that published it.
	Leader string `json:"leader"`
	// Complete: every node present when the publishing replica started leading has
	// been read once (successfully or not). Replicas are ready once they see it.
	Complete bool `json:"complete"`
	// PublishedAt is when it was written.
	PublishedAt metav1.Time `json:"publishedAt"`
	// Pools are keyed by pool label value ("" for nodes without the label).
	Pools map[string]SharedPool `json:"pools"`
}

// SharedPool is what the kubelets of one pool allow.
type SharedPool struct {
	// ReadAt is the last successful read of a kubelet of the pool.
	ReadAt *metav1.Time `json:"readAt,omitempty"`
	// Allowlists group the pool's nodes by what their kubelets allow (normally one
	// group: nodes of a pool are alike), so 5,000 nodes take about 150 kB.
	Allowlists []SharedAllowlist `json:"allowlists,omitempty"`
	// Unreachable maps each node whose last read failed to the error; one with a
	// last known allowlist is also in Allowlists.
	Unreachable map[string]string `json:"unreachable,omitempty"`
}

// SharedAllowlist is the nodes whose kubelets allow the same patterns.
type SharedAllowlist struct {
	Patterns []string `json:"patterns"`
	Nodes    []string `json:"nodes"`
}

// encodeShared builds the result from the per-node allowlists and the nodes' pool
// labels. Nodes the cache no longer holds are left out.
func encodeShared(nodes []*corev1.Node, poolLabel string, allowlists map[string]Allowlist, readAt map[string]time.Time, leader string, complete bool, now time.Time) SharedResult {
	res := SharedResult{Leader: leader, Complete: complete, PublishedAt: metav1.NewTime(now), Pools: map[string]SharedPool{}}
	groups := map[string]map[string][]string{} // pool → patterns key → nodes
	for _, n := range nodes {
		al, ok := allowlists[n.Name]
		if !ok {
			continue
		}
		pool := n.Labels[poolLabel]
		sp := res.Pools[pool]
		if al.Err != nil {
			if sp.Unreachable == nil {
				sp.Unreachable = map[string]string{}
			}
			sp.Unreachable[n.Name] = al.Err.Error()
		}
		if al.Known {
			if groups[pool] == nil {
				groups[pool] = map[string][]string{}
			}
			key := strings.Join(al.Patterns, "\x00")
			groups[pool][key] = append(groups[pool][key], n.Name)
		}
		if t, ok := readAt[n.Name]; ok && (sp.ReadAt == nil || sp.ReadAt.Time.Before(t)) {
			mt := metav1.NewTime(t)
			sp.ReadAt = &mt
		}
		res.Pools[pool] = sp
	}
	for pool, byKey := range groups {
		sp := res.Pools[pool]
		for _, key := range slices.Sorted(maps.Keys(byKey)) {
			patterns := []string{}
			if key != "" {
				patterns = strings.Split(key, "\x00")
			}
			sp.Allowlists = append(sp.Allowlists, SharedAllowlist{Patterns: patterns, Nodes: slices.Sorted(slices.Values(byKey[key]))})
		}
		res.Pools[pool] = sp
	}
	return res
}

// decode returns the per-node allowlists the result holds.
func (r *SharedResult) decode() map[string]Allowlist {
	out := map[string]Allowlist{}
	for _, sp := range r.Pools {
		for _, al := range sp.Allowlists {
			for _, n := range al.Nodes {
				out[n] = Allowlist{Known: true, Patterns: al.Patterns}
			}
		}
		for n, msg := range sp.Unreachable {
			al := out[n]
			al.Err = errors.New(msg)
			out[n] = al
		}
	}
	return out
}

// parseShared reads the result out of the ConfigMap: nil, nil when nothing is published
// yet (the ConfigMap as the manifests ship it, with no data). An elected replica of the
// last release writes only SharedKey and leaves SharedBinaryKey as it was, so with both
// the one published last is the result.
func parseShared(cm *corev1.ConfigMap) (*SharedResult, error) {
	var res *SharedResult
	if gz, ok := cm.BinaryData[SharedBinaryKey]; ok {
		r, err := unmarshalShared(gz)
		if err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s: binaryData %s is not a discovery result (%w): delete the key, the elected replica writes it again", cm.Namespace, cm.Name, SharedBinaryKey, err)
		}
		res = r
	}
	if data, ok := cm.Data[SharedKey]; ok {
		var r SharedResult
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			return nil, fmt.Errorf("ConfigMap %s/%s: %s is not a discovery result (%v): delete the key, the elected replica writes it again", cm.Namespace, cm.Name, SharedKey, err)
		}
		if res == nil || r.PublishedAt.After(res.PublishedAt.Time) {
			res = &r
		}
	}
	return res, nil
}

// marshalShared is the result as SharedBinaryKey holds it.
func marshalShared(res SharedResult) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := json.NewEncoder(zw).Encode(res); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func unmarshalShared(gz []byte) (*SharedResult, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(zr, maxSharedJSON+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSharedJSON {
		return nil, fmt.Errorf("inflates past %d MiB", maxSharedJSON>>20)
	}
	var res SharedResult
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// named is the set of nodes the result names: read, or tried and unreachable.
func (r *SharedResult) named() map[string]bool {
	named := map[string]bool{}
	for _, p := range r.Pools {
		for _, al := range p.Allowlists {
			for _, n := range al.Nodes {
				named[n] = true
			}
		}
		for n := range p.Unreachable {
			named[n] = true
		}
	}
	return named
}

// leaseHolder returns the identity holding the share's Lease, "" when none does (RBAC:
// get on leases, as the election itself needs). A fresh read, not a cache: a result is
// checked against the holder as it is now, never against an older view than the
// result itself.
func leaseHolder(ctx context.Context, client kubernetes.Interface, cfg *ShareConfig) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lease, err := client.CoordinationV1().Leases(cfg.Namespace).Get(ctx, cfg.Lease, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("could not read Lease %s/%s to check who published the discovery result: %w", cfg.Namespace, cfg.Lease, err)
	case lease.Spec.HolderIdentity == nil:
		return "", nil
	}
	return *lease.Spec.HolderIdentity, nil
}

// newSharedInformer watches the one ConfigMap (RBAC: get, list, watch on that name).
func newSharedInformer(client kubernetes.Interface, cfg *ShareConfig) cache.SharedIndexInformer {
	return coreinformers.NewFilteredConfigMapInformer(client, cfg.Namespace, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", cfg.Name).String()
	})
}

// errSharedMissing is writeShared's error when the ConfigMap does not exist: serve
// never creates it (that would need create on every ConfigMap of the namespace), the
// manifests ship it.
var errSharedMissing = errors.New("missing")

// sharedMissing tells the user how to bring the ConfigMap back; cause is the API
// server's answer, nil when the informer already knows it is gone.
func sharedMissing(cfg *ShareConfig, cause error) error {
	err := fmt.Errorf("ConfigMap %s/%s is %w: re-apply the manifests that ship it (deploy/base/discovery-result.yaml, or the Helm chart); the elected replica publishes the discovery result in it, and a replica that starts is not ready until it has", cfg.Namespace, cfg.Name, errSharedMissing)
	if cause != nil {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// writeShared updates the ConfigMap with res, in one update (so a reader sees one
// result or the other, never a mix), and returns the bytes written. A conflict (another
// replica that still thinks it leads) is returned; the caller writes again at its next
// tick. A missing ConfigMap is not created: the error (errSharedMissing) tells the user
// to re-apply the manifests that ship it.
func writeShared(ctx context.Context, client kubernetes.Interface, cfg *ShareConfig, current *corev1.ConfigMap, res SharedResult) (int, error) {
	if current == nil {
		return 0, sharedMissing(cfg, nil)
	}
	data, err := marshalShared(res)
	if err != nil {
		return 0, err
	}
	if len(data) > maxSharedBytes {
		return 0, fmt.Errorf("the discovery result of %d nodes is %d bytes compressed, over the API server's limit of %d on ConfigMap %s/%s: replicas keep the last result published; until the result is split over several objects, use allowlistFrom: annotation, which each replica reads from its own Nodes", len(res.named()), len(data), maxSharedBytes, cfg.Namespace, cfg.Name)
	}
	cm := current.DeepCopy()
	if cm.BinaryData == nil {
		cm.BinaryData = map[string][]byte{}
	}
	cm.BinaryData[SharedBinaryKey] = data
	delete(cm.Data, SharedKey)
	_, err = client.CoreV1().ConfigMaps(cfg.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return 0, sharedMissing(cfg, err)
	case apierrors.IsForbidden(err):
		return 0, fmt.Errorf("could not update ConfigMap %s/%s (grant update on it, deploy/base/rbac.yaml): %w", cfg.Namespace, cfg.Name, err)
	case err != nil:
		return 0, err
	}
	return len(data), nil
}
