package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"
)

const (
	// defaultCheckInterval is how often the files are re-read even when no
	// file-system event came: inotify misses changes made through a symlink
	// that points outside the watched directory, and watches can be lost.
	defaultCheckInterval = 10 * time.Second

	// settleDelay lets a burst of events (a writer that replaces the
	// certificate and then the key) end before the pair is read, so a
	// half-written pair is seldom even seen.
	settleDelay = 100 * time.Millisecond
)

// ReloaderConfig configures a Reloader.
type ReloaderConfig struct {
	// CertFile is the PEM certificate (chain) to serve, leaf first. Required.
	CertFile string
	// KeyFile is the PEM private key of CertFile's leaf. Required.
	KeyFile string
	// Logger receives reloads and refusals. Optional: nothing is logged by
	// default.
	Logger logrus.FieldLogger
	// OnReload is called with every pair that comes into force, the one
	// loaded by NewReloader included, e.g. to export the expiry as a metric.
	// Optional. It must not block.
	OnReload func(*tls.Certificate)
	// OnError is called when a changed pair is refused or watching fails;
	// the previous pair stays in force. Optional. It must not block.
	OnError func(error)
	// CheckInterval is how often the files are re-read even without a
	// file-system event. Optional: 10s by default.
	CheckInterval time.Duration
}

func (c *ReloaderConfig) defaults() error {
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("a TLS certificate file and key file are required; set --tls-cert-file and --tls-private-key-file")
	}
	if c.Logger == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		c.Logger = l
	}
	if c.OnReload == nil {
		c.OnReload = func(*tls.Certificate) {}
	}
	if c.OnError == nil {
		c.OnError = func(error) {}
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = defaultCheckInterval
	}
	return nil
}

// Reloader serves a TLS certificate and key from disk and follows them when
// they change, so that rotating the webhook's certificate needs no restart.
//
// It is built for Secret volumes, where the kubelet writes a new
// timestamped directory and swaps the "..data" symlink to it in one rename:
// the Reloader watches the files' directories, re-reads the pair on any event
// and every CheckInterval, and swaps it in only when the certificate and key
// parse and belong together. Anything else is refused and logged, and the
// previous pair stays in force. Handshakes read the pair in force without
// locking, through GetCertificate.
type Reloader struct {
	cfg     ReloaderConfig
	current atomic.Pointer[tls.Certificate]

	// mu serialises reloads; the fields below belong to it.
	mu sync.Mutex
	// seen is the hash of the cert and key bytes last read, whether the pair
	// was taken or refused, so that an unchanged (broken) pair is neither
	// parsed nor reported again on every check.
	seen [sha256.Size]byte
}

// NewReloader loads the pair named by cfg and returns a Reloader serving it.
// It fails when the files are missing or do not form a valid, unexpired pair:
// the webhook must not start without a certificate. Call Run to follow
// changes.
func NewReloader(cfg ReloaderConfig) (*Reloader, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &Reloader{cfg: cfg}
	certPEM, keyPEM, err := r.read()
	if err == nil {
		err = r.take(certPEM, keyPEM)
	}
	if err != nil {
		return nil, fmt.Errorf("could not load TLS key pair from %s and %s: %w; check --tls-cert-file/--tls-private-key-file", cfg.CertFile, cfg.KeyFile, err)
	}
	return r, nil
}

// GetCertificate returns the pair in force; it is meant for
// tls.Config.GetCertificate. The ClientHelloInfo is not used: the webhook
// has one identity whatever name it is reached by.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current.Load(), nil
}

// Current returns the pair in force.
func (r *Reloader) Current() *tls.Certificate { return r.current.Load() }

// Run follows changes to the files until ctx is done, then returns nil. If
// the files' directories cannot be watched (for example because the inotify
// limits are reached) it says so through the logger and OnError and falls
// back to re-reading every CheckInterval; it never stops serving the pair in
// force.
func (r *Reloader) Run(ctx context.Context) error {
	events, stop := r.watch()
	defer stop()
	// The files may have changed between NewReloader and the watch.
	r.reload()

	check := time.NewTicker(r.cfg.CheckInterval)
	defer check.Stop()
	// settle is armed by an event and fires settleDelay after the last one.
	settle := time.NewTimer(settleDelay)
	settle.Stop()
	defer settle.Stop()

	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				events = nil // watching failed; the ticker carries on alone
				continue
			}
			settle.Reset(settleDelay)
		case <-settle.C:
			r.reload()
		case <-check.C:
			r.reload()
		}
	}
}

// watch watches the directories holding the files and returns a channel
// that receives a value for every event in them; the channel is closed if
// watching fails. With an AtomicWriter volume, tls.crt is a symlink to
// ..data/tls.crt and a rotation is a rename of ..data in that directory,
// so the directory, not the file, must be watched.
func (r *Reloader) watch() (<-chan struct{}, func()) {
	events := make(chan struct{}, 1)
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		r.watchFailed(fmt.Errorf("could not watch the TLS files for changes, re-reading them every %s instead: %w; raise fs.inotify.max_user_instances if this persists", r.cfg.CheckInterval, err))
		close(events)
		return events, func() {}
	}
	for _, dir := range uniqueDirs(r.cfg.CertFile, r.cfg.KeyFile) {
		if err := watcher.Add(dir); err != nil {
			_ = watcher.Close()
			r.watchFailed(fmt.Errorf("could not watch %s for TLS file changes, re-reading them every %s instead: %w; raise fs.inotify.max_user_watches if this persists", dir, r.cfg.CheckInterval, err))
			close(events)
			return events, func() {}
		}
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(events)
		for {
			select {
			case <-done:
				return
			case _, ok := <-watcher.Events:
				if !ok {
					return
				}
				select {
				case events <- struct{}{}:
				default: // a reload is already pending; it will see this change too
				}
			case err, ok := <-watcher.Errors:
				if !ok {
					return
				}
				// Typically an event queue overflow: changes may have been
				// missed, so re-read as if something changed.
				r.watchFailed(fmt.Errorf("watching the TLS files reported an error: %w", err))
				select {
				case events <- struct{}{}:
				default:
				}
			}
		}
	})
	return events, func() {
		close(done)
		_ = watcher.Close()
		wg.Wait()
	}
}

func (r *Reloader) watchFailed(err error) {
	r.cfg.Logger.WithError(err).Warn("TLS certificate watch degraded")
	r.cfg.OnError(err)
}

// reload re-reads the pair and takes it if it changed and is valid.
func (r *Reloader) reload() {
	certPEM, keyPEM, err := r.read()
	if err != nil {
		// A file missing mid-rotation or with the volume gone; the next
		// event or check retries.
		r.refuse(err)
		return
	}
	if err := r.take(certPEM, keyPEM); err != nil {
		r.refuse(err)
	}
}

func (r *Reloader) refuse(err error) {
	err = fmt.Errorf("refused the TLS key pair in %s and %s, still serving the previous one: %w; write a certificate and its own key there", r.cfg.CertFile, r.cfg.KeyFile, err)
	r.cfg.Logger.WithError(err).Error("TLS certificate not reloaded")
	r.cfg.OnError(err)
}

func (r *Reloader) read() (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(r.cfg.CertFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = os.ReadFile(r.cfg.KeyFile)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// take puts the pair in force if it differs from the last one seen and is a
// valid, unexpired certificate with its own key. A pair already seen and
// refused returns nil without being reported again.
func (r *Reloader) take(certPEM, keyPEM []byte) error {
	sum := pairHash(certPEM, keyPEM)
	r.mu.Lock()
	defer r.mu.Unlock()
	if sum == r.seen && r.current.Load() != nil {
		return nil
	}
	r.seen = sum

	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	leaf := pair.Leaf // parsed by X509KeyPair since Go 1.23
	if now := time.Now(); now.After(leaf.NotAfter) {
		return fmt.Errorf("certificate %q expired at %s", leaf.Subject.CommonName, leaf.NotAfter.Format(time.RFC3339))
	}
	previous := r.current.Swap(&pair)
	fields := logrus.Fields{
		"serial":    leaf.SerialNumber.Text(16),
		"subject":   leaf.Subject.CommonName,
		"dns_names": leaf.DNSNames,
		"not_after": leaf.NotAfter.Format(time.RFC3339),
	}
	if previous == nil {
		r.cfg.Logger.WithFields(fields).Info("TLS certificate loaded")
	} else {
		r.cfg.Logger.WithFields(fields).Info("TLS certificate reloaded")
	}
	r.cfg.OnReload(&pair)
	return nil
}

// pairHash identifies the bytes of a pair; the separator keeps "ab"+"c" and
// "a"+"bc" apart.
func pairHash(certPEM, keyPEM []byte) [sha256.Size]byte {
	return sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
}

func uniqueDirs(paths ...string) []string {
	var dirs []string
	for _, p := range paths {
		if dir := filepath.Dir(p); !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	return dirs
}
