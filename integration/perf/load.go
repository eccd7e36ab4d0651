package perf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// Mode is how a load run paces its requests.
type Mode string

const (
	// Closed is a closed loop: each client sends its next request as soon as the
	// previous one is answered, so throughput is what the server sustains.
	Closed Mode = "closed"
	// Open is an open loop: requests are sent on a fixed schedule whatever the
	// latency, and latency is counted from the scheduled time, so a server that falls
	// behind shows it in the tail instead of slowing the generator down.
	Open Mode = "open"
)

// Scenario is one load shape.
type Scenario struct {
	// Name identifies the scenario in results, e.g. "closed-8".
	Name string `json:"name"`
	// Mode is Closed or Open.
	Mode Mode `json:"mode"`
	// Clients is the number of concurrent clients (Closed) or the most requests in
	// flight before the generator counts a request as dropped (Open).
	Clients int `json:"clients"`
	// Rate is the requests per second of an Open scenario.
	Rate int `json:"rate,omitempty"`
	// HTTP2 sends over HTTP/2 (one multiplexed connection) instead of HTTP/1.1
	// keep-alive connections, one per client.
	HTTP2 bool `json:"http2"`
	// Duration bounds the measured part of the run.
	Duration time.Duration `json:"duration"`
	// MaxRequests bounds the number of requests of the measured part.
	MaxRequests int `json:"maxRequests"`
	// Warmup is run first, unmeasured, on the same connections.
	Warmup time.Duration `json:"warmup"`
}

// Validate reports a scenario that could not run or would not be bounded.
func (s Scenario) Validate() error {
	switch {
	case s.Mode != Closed && s.Mode != Open:
		return fmt.Errorf("scenario %s: mode %q is neither %q nor %q", s.Name, s.Mode, Closed, Open)
	case s.Clients <= 0 || s.Clients > 1024:
		return fmt.Errorf("scenario %s: clients must be between 1 and 1024, got %d", s.Name, s.Clients)
	case s.Mode == Open && (s.Rate <= 0 || s.Rate > 100_000):
		return fmt.Errorf("scenario %s: an open loop needs a rate between 1 and 100000 req/s, got %d", s.Name, s.Rate)
	case s.Duration <= 0 || s.Duration > 10*time.Minute:
		return fmt.Errorf("scenario %s: duration must be positive and at most 10m, got %s", s.Name, s.Duration)
	case s.MaxRequests <= 0:
		return fmt.Errorf("scenario %s: maxRequests must be positive, got %d", s.Name, s.MaxRequests)
	case s.Warmup < 0:
		return fmt.Errorf("scenario %s: warmup must not be negative", s.Name)
	}
	return nil
}

// Target is an HTTPS admission endpoint on the loopback interface.
type Target struct {
	// Name is "serve" or "floor".
	Name string
	// URL is the endpoint, e.g. https://127.0.0.1:8443/mutate?timeout=10s.
	URL string
	// RootCAs verifies the server's certificate.
	RootCAs *x509.CertPool
	// ExpectPatch makes a response without a JSON patch count as an error.
	ExpectPatch bool
}

// Latencies holds a run's latency percentiles.
type Latencies struct {
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// LoadResult is what one scenario against one target measured.
type LoadResult struct {
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	// Requests counts answered and failed requests of the measured part.
	Requests int `json:"requests"`
	// Errors counts failed requests: transport errors, statuses other than 200,
	// responses that are not the expected AdmissionReview, and (open loop) requests
	// dropped because too many were in flight.
	Errors int `json:"errors"`
	// ErrorKinds counts errors by their first words, with one example each.
	ErrorKinds map[string]ErrorKind `json:"errorKinds,omitempty"`
	// Elapsed is the measured wall time.
	Elapsed time.Duration `json:"elapsed"`
	// Throughput is successful requests per second.
	Throughput float64 `json:"throughput"`
	Latencies
	// Protocol is the HTTP version the responses came with, e.g. "HTTP/1.1".
	Protocol string `json:"protocol"`
	// Connections is how many TLS connections were opened (warm-up included).
	Connections int64 `json:"connections"`
	// ResponseBytes is the size of one successful response body.
	ResponseBytes int `json:"responseBytes"`
	// Process is the target process's CPU time and memory during the run.
	Process process.Delta `json:"process"`
	// LoadAverage is the machine's one-minute load average at the end of the run.
	LoadAverage float64 `json:"loadAverage"`
}

// ErrorKind is one kind of error and an example of it.
type ErrorKind struct {
	Count   int    `json:"count"`
	Example string `json:"example"`
}

// clientTimeout is the API server's default webhook timeout (timeoutSeconds: 10).
const clientTimeout = 10 * time.Second

// Loader sends one scenario's load to one target over its own connections.
type Loader struct {
	scenario Scenario
	reviews  []Review
	c        *client
}

// NewLoader checks the scenario and the target (which must be on the loopback
// interface) and prepares a client whose connections outlive Warmup, so that the
// measured part starts on warm keep-alive connections. reviews are sent round-robin.
func NewLoader(s Scenario, target Target, reviews []Review) (*Loader, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if len(reviews) == 0 {
		return nil, errors.New("no AdmissionReviews to send; build them with CreateReviews")
	}
	u, err := url.Parse(target.URL)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("target %s: %q is not an https URL", target.Name, target.URL)
	}
	if err := requireLoopback(u.Host); err != nil {
		return nil, fmt.Errorf("target %s: %w", target.Name, err)
	}
	return &Loader{scenario: s, reviews: reviews, c: newClient(s, target)}, nil
}

// Warmup runs the scenario for its warm-up time and forgets what it measured. It
// returns the warm-up's errors so that a target that answers nothing is caught
// before the measured part.
func (l *Loader) Warmup(ctx context.Context) error {
	if l.scenario.Warmup == 0 {
		return nil
	}
	warm := l.scenario
	warm.Duration = l.scenario.Warmup
	rec := &recorder{}
	l.c.run(ctx, warm, l.reviews, rec)
	if err := ctx.Err(); err != nil {
		return err
	}
	if rec.errors > 0 && len(rec.latencies) == 0 {
		for _, k := range rec.kinds {
			return fmt.Errorf("every warm-up request to %s failed, e.g.: %s", l.c.target.Name, k.Example)
		}
	}
	return nil
}

// Measure runs the scenario until its duration or request count is reached.
func (l *Loader) Measure(ctx context.Context) (LoadResult, error) {
	rec := &recorder{}
	started := time.Now()
	l.c.run(ctx, l.scenario, l.reviews, rec)
	elapsed := time.Since(started)
	if err := ctx.Err(); err != nil {
		return LoadResult{}, err
	}
	return rec.result(l.scenario, l.c.target, elapsed, l.c.dials.Load()), nil
}

// Close closes the loader's idle connections.
func (l *Loader) Close() { l.c.transport.CloseIdleConnections() }

// client sends AdmissionReviews to one target.
type client struct {
	http      *http.Client
	transport *http.Transport
	target    Target
	dials     atomic.Int64
}

func newClient(s Scenario, target Target) *client {
	c := &client{target: target}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	protocols := new(http.Protocols)
	// HTTP/1.1 needs a connection per request in flight; HTTP/2 multiplexes them
	// on one, as client-go does towards one host.
	maxConns := s.Clients
	if s.HTTP2 {
		protocols.SetHTTP2(true)
		maxConns = 1
	} else {
		protocols.SetHTTP1(true)
	}
	c.transport = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c.dials.Add(1)
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     ClientTLS(target.RootCAs),
		Protocols:           protocols,
		MaxIdleConns:        s.Clients,
		MaxIdleConnsPerHost: s.Clients,
		MaxConnsPerHost:     maxConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
		DisableCompression:  true,
	}
	c.http = &http.Client{Transport: c.transport, Timeout: clientTimeout}
	return c
}

// run sends the scenario's load until its duration or request count is reached.
// Requests in flight at the deadline are waited for, not cancelled: cancelling would
// close their HTTP/1.1 connections and make the next run dial again.
func (c *client) run(ctx context.Context, s Scenario, reviews []Review, rec *recorder) {
	deadline := time.Now().Add(s.Duration)
	if s.Mode == Open {
		c.openLoop(ctx, deadline, s, reviews, rec)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range s.Clients {
		wg.Go(func() {
			var lat []time.Duration
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= int64(s.MaxRequests) {
					break
				}
				t0 := time.Now()
				err := c.send(ctx, reviews[i%int64(len(reviews))], rec)
				rec.observe(&lat, time.Since(t0), err)
			}
			rec.merge(lat)
		})
	}
	wg.Wait()
}

// openLoop schedules request i at start + i/rate and gives it to a free worker;
// when all workers are busy and the queue is full the request is dropped and counted
// as an error. Latency counts from the scheduled time, so time spent queued shows.
func (c *client) openLoop(ctx context.Context, deadline time.Time, s Scenario, reviews []Review, rec *recorder) {
	type job struct {
		at     time.Time
		review Review
	}
	jobs := make(chan job, s.Clients)
	var wg sync.WaitGroup
	for range s.Clients {
		wg.Go(func() {
			var lat []time.Duration
			for j := range jobs {
				err := c.send(ctx, j.review, rec)
				rec.observe(&lat, time.Since(j.at), err)
			}
			rec.merge(lat)
		})
	}
	interval := time.Second / time.Duration(s.Rate)
	start := time.Now()
	total := min(s.MaxRequests, int(deadline.Sub(start)/interval))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case jobs <- job{at: at, review: reviews[i%len(reviews)]}:
		default:
			rec.fail(fmt.Errorf("dropped: more than %d requests in flight or queued", 2*s.Clients))
		}
	}
	close(jobs)
	wg.Wait()
}

// send posts one review the way the API server does and checks the answer.
func (c *client) send(ctx context.Context, review Review, rec *recorder) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.target.URL, bytes.NewReader(review.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("transport: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("transport: reading the response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.120s", resp.StatusCode, body)
	}
	// A cheap check that keeps the generator's own CPU time low: the UID is echoed,
	// the review is allowed and, for /mutate, carries a patch.
	if !bytes.Contains(body, []byte(review.UID)) || !bytes.Contains(body, []byte(`"allowed":true`)) {
		return fmt.Errorf("bad response: not an allowed AdmissionReview for uid %s: %.120s", review.UID, body)
	}
	if c.target.ExpectPatch && !bytes.Contains(body, []byte(`"patch":"`)) {
		return fmt.Errorf("bad response: no JSON patch for uid %s: %.120s", review.UID, body)
	}
	rec.seen(resp.Proto, len(body))
	return nil
}

// recorder collects one run's latencies and errors from all its clients.
type recorder struct {
	mu            sync.Mutex
	latencies     []time.Duration
	requests      int
	errors        int
	kinds         map[string]ErrorKind
	protocol      atomic.Value
	responseBytes atomic.Int64
}

func (r *recorder) observe(lat *[]time.Duration, d time.Duration, err error) {
	if err != nil {
		r.fail(err)
		return
	}
	*lat = append(*lat, d)
}

func (r *recorder) seen(proto string, n int) {
	if r.protocol.Load() == nil {
		r.protocol.Store(proto)
		r.responseBytes.Store(int64(n))
	}
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	r.errors++
	if r.kinds == nil {
		r.kinds = map[string]ErrorKind{}
	}
	key := errorKey(err)
	k := r.kinds[key]
	if k.Count == 0 {
		k.Example = err.Error()
	}
	k.Count++
	r.kinds[key] = k
}

func (r *recorder) merge(lat []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latencies = append(r.latencies, lat...)
	r.requests += len(lat)
}

func (r *recorder) result(s Scenario, target Target, elapsed time.Duration, dials int64) LoadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := LoadResult{
		Scenario:      s.Name,
		Target:        target.Name,
		Requests:      r.requests,
		Errors:        r.errors,
		ErrorKinds:    r.kinds,
		Elapsed:       elapsed,
		Throughput:    float64(len(r.latencies)) / elapsed.Seconds(),
		Latencies:     Percentiles(r.latencies),
		Connections:   dials,
		ResponseBytes: int(r.responseBytes.Load()),
	}
	if p, ok := r.protocol.Load().(string); ok {
		res.Protocol = p
	}
	return res
}

// errorKey groups errors by their first three words ("status 500:", "transport:
// Post ...", "dropped: more than").
func errorKey(err error) string {
	words := strings.Fields(err.Error())
	return strings.Join(words[:min(3, len(words))], " ")
}

// Percentiles returns the nearest-rank p50, p90, p99 and the maximum of ds, which it
// sorts in place. It returns zeros for no samples.
func Percentiles(ds []time.Duration) Latencies {
	if len(ds) == 0 {
		return Latencies{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	rank := func(p float64) time.Duration {
		// Nearest rank: the smallest sample with at least p of the samples at or below it.
		i := int(math.Ceil(float64(len(ds))*p)) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Latencies{P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: ds[len(ds)-1]}
}

// ClientTLS is the load generator's TLS configuration: the servers' CA, TLS 1.2 or
// newer (Go negotiates TLS 1.3 with both servers).
func ClientTLS(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
