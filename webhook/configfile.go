package webhook

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/sirupsen/logrus"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// LoadConfigFile reads, validates and compiles a PlacementConfig file. The error lists
// every invalid field with its path.
func LoadConfigFile(path string) (*scheduling.Compiled, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("could not read the config file: %w", err)
	}
	compiled, err := CompileConfig(data)
	if err != nil {
		return nil, data, fmt.Errorf("invalid config %s: %w", path, err)
	}
	return compiled, data, nil
}

// CompileConfig parses and compiles PlacementConfig YAML or JSON.
func CompileConfig(data []byte) (*scheduling.Compiled, error) {
	cfg, err := scheduling.ParseConfig(data)
	if err != nil {
		return nil, err
	}
	return scheduling.Compile(cfg)
}

// ConfigWatcher keeps a ConfigStore in step with a config file mounted from a
// ConfigMap: a changed valid file takes effect for the next request; an invalid one is
// refused with its field errors in the log and a metric, and the last good one stays.
type ConfigWatcher struct {
	path     string
	store    ConfigSink
	metrics  *Metrics
	logger   logrus.FieldLogger
	interval time.Duration
	last     []byte
	// unreadable is set while the file cannot be read, so that is reported once.
	unreadable bool
}

// NewConfigWatcher loads path into store (failing when it is invalid: a webhook must
// not start without a good config) and returns a watcher for Run. store is usually a
// *ConfigStore, or a discovery combiner in front of one.
func NewConfigWatcher(path string, store ConfigSink, metrics *Metrics, logger logrus.FieldLogger) (*ConfigWatcher, error) {
	compiled, data, err := LoadConfigFile(path)
	metrics.ObserveConfigReload(err == nil)
	if err != nil {
		return nil, err
	}
	store.Set(compiled)
	return &ConfigWatcher{path: path, store: store, metrics: metrics, logger: logger, interval: 10 * time.Second, last: data}, nil
}

// Run watches the file's directory (ConfigMap volumes swap a ..data symlink, which
// replaces the file without writing to it) and re-reads the file on every event, and
// every interval as a safety net, until ctx ends.
func (w *ConfigWatcher) Run(ctx context.Context) error {
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("could not watch the config file: %w", err)
	}
	defer watcher.Close()
	if err := watcher.Add(filepath.Dir(w.path)); err != nil {
		return fmt.Errorf("could not watch the config file's directory: %w", err)
	}
	// A change made between the first load and the watch would otherwise wait for
	// the periodic check.
	w.reload()
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-watcher.Events:
			w.reload()
		case err := <-watcher.Errors:
			w.logger.WithError(err).Warn("watching the config file failed; the periodic check goes on")
		case <-ticker.C:
			w.reload()
		}
	}
}

func (w *ConfigWatcher) reload() {
	data, err := os.ReadFile(w.path)
	if err != nil {
		// A deleted ConfigMap, or one whose key was removed, takes the file away.
		// Say so once (a log line and a metric), not on every check.
		if !w.unreadable {
			w.unreadable = true
			w.metrics.observeConfigUnreadable()
			w.logger.WithError(err).WithField("file", w.path).Error("could not read the config file; the last good config stays in force")
		}
		return
	}
	if w.unreadable {
		w.unreadable = false
		w.logger.WithField("file", w.path).Info("the config file is readable again")
	}
	if bytes.Equal(data, w.last) {
		return
	}
	w.last = data
	compiled, err := CompileConfig(data)
	w.metrics.ObserveConfigReload(err == nil)
	if err != nil {
		w.logger.WithError(err).WithField("file", w.path).Error("refused the changed config; the last good config stays in force")
		return
	}
	w.store.Set(compiled)
	w.logger.WithField("file", w.path).Info("loaded the changed config")
}
