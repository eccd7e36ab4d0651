package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"k8s.io/apimachinery/pkg/util/wait"
)

const oneIPCPool = `apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
pools:
  - name: ipc
    nodeSelector: {pool: ipc}
    allowedUnsafeSysctls: ["kernel.shm*"]
`

const twoPools = oneIPCPool + `  - name: net
    nodeSelector: {pool: net}
    allowedUnsafeSysctls: ["net.core.somaxconn"]
`

const invalidConfig = `apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
pools:
  - name: broken
    nodeSelector: {}
    allowedUnsafeSysctls: ["kernel.panic"]
`

// configMapVolume writes files the way the kubelet updates a ConfigMap volume: a new
// timestamped directory, then an atomic rename of the ..data symlink.
type configMapVolume struct {
	dir string
	gen int
}

func newConfigMapVolume(t *testing.T, content string) *configMapVolume {
	t.Helper()
	v := &configMapVolume{dir: t.TempDir()}
	v.update(t, content)
	if err := os.Symlink(filepath.Join("..data", "config.yaml"), v.path()); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *configMapVolume) path() string { return filepath.Join(v.dir, "config.yaml") }

func (v *configMapVolume) update(t *testing.T, content string) {
	t.Helper()
	v.swap(t, &content)
}

// swap makes a new timestamped directory holding config.yaml with content (none when
// content is nil) and points ..data at it.
func (v *configMapVolume) swap(t *testing.T, content *string) {
	t.Helper()
	v.gen++
	ts := filepath.Join(v.dir, "..2026_11_26_"+strings.Repeat("x", v.gen))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if content != nil {
		if err := os.WriteFile(filepath.Join(ts, "config.yaml"), []byte(*content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

// runUntilCleanup runs w until the test ends.
func runUntilCleanup(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the watcher ended with %v, want nil once ctx ends", err)
		}
	})
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting until %s", what)
	}
}

func poolNames(s *Store) []string {
	var names []string
	for _, p := range s.Current().Pools() {
		names = append(names, p.Name)
	}
	return names
}

func TestWatcher(t *testing.T) {
	t.Run("a changed config takes effect and an invalid one is refused", func(t *testing.T) {
		vol := newConfigMapVolume(t, oneIPCPool)
		reg := prometheus.NewRegistry()
		metrics := NewMetrics(reg)
		logger, logs := logtest.NewNullLogger()
		store := NewStore(nil)
		w, err := NewWatcher(WatcherConfig{Path: vol.path(), Sink: store, Metrics: metrics, Logger: logger})
		if err != nil {
			t.Fatalf("the initial valid config was refused: %v", err)
		}
		if got := poolNames(store); len(got) != 1 {
			t.Fatalf("pools after start = %v, want [ipc]", got)
		}
		runUntilCleanup(t, w)

		vol.update(t, twoPools)
		eventually(t, "the changed config is in force", func() bool { return len(poolNames(store)) == 2 })

		vol.update(t, invalidConfig)
		eventually(t, "the invalid config is counted", func() bool {
			return testutil.ToFloat64(metrics.reloads.WithLabelValues("invalid")) == 1
		})
		if got := poolNames(store); len(got) != 2 {
			t.Errorf("after an invalid change the last good config must stay: pools = %v", got)
		}
		var refused *logrus.Entry
		for _, e := range logs.AllEntries() {
			if e.Level == logrus.ErrorLevel {
				refused = e
			}
		}
		if refused == nil {
			t.Fatal("the refused config was not logged as an error")
		}
		logged := refused.Message + " " + refused.Data[logrus.ErrorKey].(error).Error()
		for _, want := range []string{"pools[0].nodeSelector", "pools[0].allowedUnsafeSysctls[0]", "kernel.panic"} {
			if !strings.Contains(logged, want) {
				t.Errorf("the log line %q does not name %q", logged, want)
			}
		}
		if got := testutil.ToFloat64(metrics.reloads.WithLabelValues("success")); got != 2 {
			t.Errorf("successful loads = %v, want 2 (start and the valid change)", got)
		}
	})

	t.Run("a webhook does not start with an invalid config", func(t *testing.T) {
		vol := newConfigMapVolume(t, invalidConfig)
		_, err := NewWatcher(WatcherConfig{Path: vol.path(), Sink: NewStore(nil), Logger: logrus.New()})
		if err == nil || !strings.Contains(err.Error(), "pools[0].nodeSelector") {
			t.Fatalf("want an error naming the invalid field, got %v", err)
		}
	})

	t.Run("a deleted or emptied ConfigMap keeps the last good config and says so once", func(t *testing.T) {
		vol := newConfigMapVolume(t, twoPools)
		metrics := NewMetrics(prometheus.NewRegistry())
		logger, logs := logtest.NewNullLogger()
		store := NewStore(nil)
		// A short interval: several periodic checks while the file is gone.
		w, err := NewWatcher(WatcherConfig{Path: vol.path(), Sink: store, Metrics: metrics, Logger: logger, Interval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		runUntilCleanup(t, w)

		vol.deleteKey(t)
		eventually(t, "the missing file is counted", func() bool {
			return testutil.ToFloat64(metrics.reloads.WithLabelValues("unreadable")) == 1
		})
		// Let a few periodic checks pass over the missing file: still one report.
		ticks := 0
		eventually(t, "several checks pass", func() bool { ticks++; return ticks > 20 })
		if got := testutil.ToFloat64(metrics.reloads.WithLabelValues("unreadable")); got != 1 {
			t.Errorf("the missing file was counted %v times, want once", got)
		}
		errorsLogged := 0
		for _, e := range logs.AllEntries() {
			if e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "could not read the config file") {
				errorsLogged++
			}
		}
		if errorsLogged != 1 {
			t.Errorf("the missing file was logged %d times, want once", errorsLogged)
		}
		if got := poolNames(store); len(got) != 2 {
			t.Fatalf("after the ConfigMap went away the last good config must stay: pools = %v", got)
		}

		vol.update(t, "")
		eventually(t, "the emptied config is refused", func() bool {
			return testutil.ToFloat64(metrics.reloads.WithLabelValues("invalid")) == 1
		})
		if got := poolNames(store); len(got) != 2 {
			t.Fatalf("after the ConfigMap was emptied the last good config must stay: pools = %v", got)
		}
	})
}

// deleteKey makes the volume what the kubelet leaves when the ConfigMap is deleted or
// its key removed: a new ..data without config.yaml.
func (v *configMapVolume) deleteKey(t *testing.T) {
	t.Helper()
	v.swap(t, nil)
}

func TestReloadGauges(t *testing.T) {
	vol := newConfigMapVolume(t, oneIPCPool)
	metrics := NewMetrics(prometheus.NewRegistry())
	logger, _ := logtest.NewNullLogger()
	w, err := NewWatcher(WatcherConfig{Path: vol.path(), Sink: NewStore(nil), Metrics: metrics, Logger: logger, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, w)
	lastOK := func() float64 { return testutil.ToFloat64(metrics.lastOK) }
	firstLoad := testutil.ToFloat64(metrics.lastOKTime)
	t.Run("the first load sets last_reload_successful to 1 with a timestamp", func(t *testing.T) {
		if lastOK() != 1 || firstLoad == 0 {
			t.Fatalf("last_reload_successful = %v, success timestamp = %v; want 1 and a time", lastOK(), firstLoad)
		}
	})
	t.Run("a refused edit sets it to 0 and keeps the success timestamp", func(t *testing.T) {
		vol.update(t, invalidConfig)
		eventually(t, "the refusal is reported", func() bool { return lastOK() == 0 })
		if got := testutil.ToFloat64(metrics.lastOKTime); got != firstLoad {
			t.Errorf("the success timestamp moved on a refused edit: %v → %v", firstLoad, got)
		}
	})
	t.Run("a fixed edit sets it back to 1 with a timestamp no older", func(t *testing.T) {
		vol.update(t, twoPools)
		eventually(t, "the fixed config is reported", func() bool { return lastOK() == 1 })
		if got := testutil.ToFloat64(metrics.lastOKTime); got < firstLoad {
			t.Errorf("the success timestamp went back: %v → %v", firstLoad, got)
		}
	})
	t.Run("an unreadable file sets it to 0", func(t *testing.T) {
		vol.deleteKey(t)
		eventually(t, "the missing file is reported", func() bool { return lastOK() == 0 })
	})
	t.Run("the same good file back sets it to 1 again", func(t *testing.T) {
		vol.update(t, twoPools)
		eventually(t, "the restored file is reported", func() bool { return lastOK() == 1 })
	})
}
