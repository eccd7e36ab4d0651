package cluster

// LoadBalancer stands in for a Service in front of webhook replicas, on loopback. Like
// kube-proxy it balances connections, not requests, and only sends new connections to
// backends whose readiness probe passes; connections already open stay where they are
// until either side closes them. One liberty: a connect that is refused (the backend
// process is gone and the probe has not noticed yet) is retried on another ready
// backend — nothing was sent on it, so this is what a client's own retry would do.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one replica behind a LoadBalancer.
type Backend struct {
	// Addr is the TCP address connections are forwarded to (host:port).
	Addr string
	// ReadyURL is polled with GET; 200 means ready. Empty: always ready.
	ReadyURL string
}

// LoadBalancerOptions configure StartLoadBalancer.
type LoadBalancerOptions struct {
	// Listen is the loopback address to listen on. Default: a free port on 127.0.0.1.
	Listen string
	// ProbeInterval is how often each backend's readiness is polled. Default 100ms.
	ProbeInterval time.Duration
}

// LoadBalancer is a running loopback TCP load balancer.
type LoadBalancer struct {
	// Addr is where it listens, e.g. 127.0.0.1:41234.
	Addr string

	listener net.Listener
	backends []*lbBackend
	next     atomic.Uint64
	cancel   context.CancelFunc
	// done is closed when Close starts.
	done <-chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

type lbBackend struct {
	Backend
	ready atomic.Bool
	// accepted counts the connections forwarded to this backend.
	accepted atomic.Int64
	// refused counts connects to it that failed.
	refused atomic.Int64
}

// StartLoadBalancer listens on loopback and forwards connections to the backends.
// Each backend starts as not ready until its first probe passes. Close stops it.
func StartLoadBalancer(opts LoadBalancerOptions, backends ...Backend) (*LoadBalancer, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = 100 * time.Millisecond
	}
	l, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("the load balancer could not listen on %s: %w", opts.Listen, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lb := &LoadBalancer{Addr: l.Addr().String(), listener: l, cancel: cancel, done: ctx.Done(), conns: map[net.Conn]struct{}{}}
	for _, b := range backends {
		be := &lbBackend{Backend: b}
		be.ready.Store(b.ReadyURL == "")
		lb.backends = append(lb.backends, be)
		if b.ReadyURL != "" {
			lb.wg.Add(1)
			go func() { defer lb.wg.Done(); lb.probe(ctx, be, opts.ProbeInterval) }()
		}
	}
	lb.wg.Add(1)
	go func() { defer lb.wg.Done(); lb.serve() }()
	return lb, nil
}

// WaitReady waits until n backends are ready.
func (lb *LoadBalancer) WaitReady(ctx context.Context, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if lb.ReadyBackends() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of the load balancer's backends are ready, want %d: %w", lb.ReadyBackends(), n, ctx.Err())
		case <-t.C:
		}
	}
}

// ReadyBackends counts the backends whose last probe passed.
func (lb *LoadBalancer) ReadyBackends() int {
	n := 0
	for _, b := range lb.backends {
		if b.ready.Load() {
			n++
		}
	}
	return n
}

// Accepted returns how many connections were forwarded to each backend, in order.
func (lb *LoadBalancer) Accepted() []int64 {
	out := make([]int64, len(lb.backends))
	for i, b := range lb.backends {
		out[i] = b.accepted.Load()
	}
	return out
}

// Refused returns how many connects to each backend failed, in order.
func (lb *LoadBalancer) Refused() []int64 {
	out := make([]int64, len(lb.backends))
	for i, b := range lb.backends {
		out[i] = b.refused.Load()
	}
	return out
}

// Close stops listening and closes every forwarded connection.
func (lb *LoadBalancer) Close() error {
	lb.mu.Lock()
	lb.cancel()
	lb.mu.Unlock()
	err := lb.listener.Close()
	lb.mu.Lock()
	for c := range lb.conns {
		c.Close()
	}
	lb.mu.Unlock()
	lb.wg.Wait()
	return err
}

func (lb *LoadBalancer) probe(ctx context.Context, b *lbBackend, interval time.Duration) {
	client := &http.Client{Timeout: interval * 5, Transport: &http.Transport{DisableKeepAlives: true}}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.ReadyURL, nil)
		if err != nil {
			return
		}
		resp, err := client.Do(req)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		b.ready.Store(ok)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (lb *LoadBalancer) serve() {
	for {
		c, err := lb.listener.Accept()
		if err != nil {
			return // closed
		}
		lb.wg.Add(1)
		go func() { defer lb.wg.Done(); lb.forward(c) }()
	}
}

// forward connects the client to the next ready backend and copies both ways until
// either side closes.
func (lb *LoadBalancer) forward(client net.Conn) {
	defer client.Close()
	start := lb.next.Add(1)
	var backend net.Conn
	for i := range uint64(len(lb.backends)) {
		b := lb.backends[(start+i)%uint64(len(lb.backends))]
		if !b.ready.Load() {
			continue
		}
		c, err := net.DialTimeout("tcp", b.Addr, time.Second)
		if err != nil {
			b.refused.Add(1)
			continue
		}
		b.accepted.Add(1)
		backend = c
		break
	}
	if backend == nil {
		return // no ready backend: the client sees the connection closed
	}
	defer backend.Close()
	if !lb.track(client, backend) {
		return
	}
	defer lb.untrack(client, backend)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(backend, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, backend); done <- struct{}{} }()
	<-done // either side ended: end both, as a connection-tracking proxy does
}

func (lb *LoadBalancer) track(conns ...net.Conn) bool {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	select {
	case <-lb.done:
		return false // closing: Close may already have closed the tracked ones
	default:
	}
	for _, c := range conns {
		lb.conns[c] = struct{}{}
	}
	return true
}

func (lb *LoadBalancer) untrack(conns ...net.Conn) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	for _, c := range conns {
		delete(lb.conns, c)
	}
}
