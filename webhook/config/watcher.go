package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// LoadFile reads, validates and compiles a PlacementConfig file. The error lists
// every invalid field with its path.
func LoadFile(path string) (*scheduling.Compiled, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("could not read the config file: %w", err)
	}
	compiled, err := Compile(data)
	if err != nil {
		return nil, data, fmt.Errorf("invalid config %s: %w", path, err)
	}
	return compiled, data, nil
}

// Compile parses and compiles PlacementConfig YAML or JSON.
func Compile(data []byte) (*scheduling.Compiled, error) {
	cfg, err := scheduling.ParseConfig(data)
	if err != nil {
		return nil, err
	}
	return scheduling.Compile(cfg)
}

// Watcher keeps a Sink in step with a config file mounted from a ConfigMap: a changed
// valid file takes effect for the next request; an invalid one is refused with its
// field errors in the log and a metric, and the last good one stays.
type Watcher struct {
	cfg  WatcherConfig
	last []byte
	// lastOK says whether last compiled, so that a file that comes back unchanged
	// after being unreadable restores the last-reload metric.
	lastOK bool
	// unreadable is set while the file cannot be read, so that is reported once.
	unreadable bool
}

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Path is the config file (required).
	Path string
	// Sink receives each valid config (required): a *Store, or discovery's Combiner in
	// front of one.
	Sink Sink
	// Metrics counts loads; nil counts nothing.
	Metrics *Metrics
	// Logger reports refused and unreadable files; nil logs nothing.
	Logger logrus.FieldLogger
	// Interval is how often the file is re-read besides on file events; default 10s.
	Interval time.Duration
}

func (c *WatcherConfig) defaults() error {
	if c.Path == "" {
		return errors.New("a config file path is required")
	}
	if c.Sink == nil {
		return errors.New("a config sink is required")
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	return nil
}

// NewWatcher loads the file into the sink (failing when it is invalid: a webhook must
// not start without a good config) and returns a watcher for Run.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("invalid config watcher configuration: %w", err)
	}
	compiled, data, err := LoadFile(cfg.Path)
	cfg.Metrics.observeLoad(err == nil)
	if err != nil {
		return nil, err
	}
	cfg.Sink.Set(compiled)
	return &Watcher{cfg: cfg, last: data, lastOK: true}, nil
}

// Run watches the file's directory (ConfigMap volumes swap a ..data symlink, which
// replaces the file without writing to it) and re-reads the file on every event, and
// every interval as a safety net, until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("could not watch the config file: %w", err)
	}
	defer func() { _ = watcher.Close() }() // only ends the watch: nothing written is lost
	if err := watcher.Add(filepath.Dir(w.cfg.Path)); err != nil {
		return fmt.Errorf("could not watch the config file's directory: %w", err)
	}
	// A change made between the first load and the watch would otherwise wait for
	// the periodic check.
	w.reload()
	ticker := time.NewTicker(w.cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-watcher.Events:
			w.reload()
		case err := <-watcher.Errors:
			w.cfg.Logger.WithError(err).Warn("watching the config file failed; the periodic check goes on")
		case <-ticker.C:
			w.reload()
		}
	}
}

func (w *Watcher) reload() {
	data, err := os.ReadFile(w.cfg.Path)
	if err != nil {
		// A deleted ConfigMap, or one whose key was removed, takes the file away.
		// Say so once (a log line and a metric), not on every check.
		if !w.unreadable {
			w.unreadable = true
			w.cfg.Metrics.observeUnreadable()
			w.cfg.Logger.WithError(err).WithField("file", w.cfg.Path).Error("could not read the config file; the last good config stays in force")
		}
		return
	}
	if w.unreadable {
		w.unreadable = false
		w.cfg.Logger.WithField("file", w.cfg.Path).Info("the config file is readable again")
		if bytes.Equal(data, w.last) {
			w.cfg.Metrics.observeInForce(w.lastOK)
		}
	}
	if bytes.Equal(data, w.last) {
		return
	}
	w.last = data
	compiled, err := Compile(data)
	w.lastOK = err == nil
	w.cfg.Metrics.observeLoad(err == nil)
	if err != nil {
		w.cfg.Logger.WithError(err).WithField("file", w.cfg.Path).Error("refused the changed config; the last good config stays in force")
		return
	}
	w.cfg.Sink.Set(compiled)
	w.cfg.Logger.WithField("file", w.cfg.Path).Info("loaded the changed config")
}
