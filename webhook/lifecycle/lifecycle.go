// Package lifecycle runs serve's process once it is wired: the admission and
// metrics listeners, the background tasks (config and certificate reloads, discovery,
// audit Events), the health endpoints, and the shutdown in three steps: drain
// (/readyz fails while requests are still answered), stop taking admissions with a
// grace period for those in flight, then stop the tasks. cmd/sysctl-placement builds
// the handlers and tasks from its flags; this package owns only their lifetime.
package lifecycle

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sysctl-placement/sysctl-placement/webhook"
)

// Task is a background part of the process that runs until its context ends.
type Task struct {
	// Name prefixes its error; empty for a task whose errors name themselves.
	Name string
	Run  func(ctx context.Context) error
}

// Config is the wired process.
type Config struct {
	// Admission answers /mutate and /validate on AdmissionListener over TLS with
	// AdmissionTLS.
	Admission         http.Handler
	AdmissionTLS      *tls.Config
	AdmissionListener net.Listener
	// OpsListener serves /healthz, /readyz, /metrics and, with Profiling, pprof: over
	// TLS with OpsTLS, plain HTTP when it is nil.
	OpsListener net.Listener
	OpsTLS      *tls.Config
	Metrics     http.Handler
	Profiling   bool
	// Protect guards what reveals the process (metrics, profiles); nil leaves them
	// open. The probes stay open for the kubelet, which sends no token.
	Protect func(http.Handler) http.Handler
	// Ready says why the process cannot take admissions yet, or nil.
	Ready func() error
	// Tasks run until the servers have shut down; the first to fail shuts the process
	// down, and Run returns its error.
	Tasks []Task
	// ShutdownDelay is the drain after ctx ends (see drain); ShutdownGrace how long
	// in-flight requests may take after it.
	ShutdownDelay time.Duration
	ShutdownGrace time.Duration
	Logger        *logrus.Entry
}

// Run serves until ctx ends or a server or task fails, then shuts down. It closes
// both listeners.
func Run(ctx context.Context, cfg Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	log := cfg.Logger

	// draining is set after ctx ends; see Config.ShutdownDelay.
	var draining atomic.Bool
	admission := webhook.NewServer(closeWhenDraining(&draining, cfg.Admission), cfg.AdmissionTLS, webhook.AdmissionServerLimits(), newServerErrorLog(log))
	ready := func() error {
		if draining.Load() {
			return errors.New("shutting down")
		}
		return cfg.Ready()
	}
	ops := webhook.NewServer(opsHandler(ready, cfg.Metrics, cfg.Profiling, cfg.Protect), cfg.OpsTLS, webhook.OpsServerLimits(), newServerErrorLog(log))
	log.WithFields(logrus.Fields{"listen": cfg.AdmissionListener.Addr().String(), "metricsListen": cfg.OpsListener.Addr().String()}).Info("serving")

	var wg sync.WaitGroup
	// Room for an error from every goroutine, so none blocks after the first.
	errs := make(chan error, len(cfg.Tasks)+2)
	goRun := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				if name != "" {
					err = fmt.Errorf("%s: %w", name, err)
				}
				errs <- err
			}
		})
	}
	for _, t := range cfg.Tasks {
		goRun(t.Name, func() error { return t.Run(ctx) })
	}
	goRun("metrics server", func() error {
		if cfg.OpsTLS != nil {
			return ignoreClosed(ops.ServeTLS(cfg.OpsListener, "", ""))
		}
		return ignoreClosed(ops.Serve(cfg.OpsListener))
	})
	goRun("webhook server", func() error { return ignoreClosed(admission.ServeTLS(cfg.AdmissionListener, "", "")) })

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight requests")
	case runErr = <-errs:
		log.WithError(runErr).Error("shutting down")
	}
	if runErr == nil && cfg.ShutdownDelay > 0 {
		drain(&draining, cfg.ShutdownDelay, errs, log)
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer stop()
	// Stop taking admissions first; in-flight requests finish within the grace period.
	if err := admission.Shutdown(shutdownCtx); err != nil {
		log.WithError(err).Warn("in-flight admissions did not finish within the grace period")
	}
	_ = ops.Shutdown(shutdownCtx)
	cancel()
	wg.Wait()
	return runErr
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// newServerErrorLog routes net/http's own messages (mostly TLS handshake errors from
// probes and scanners) to debug level, so they cannot flood the log.
func newServerErrorLog(log *logrus.Entry) *stdlog.Logger {
	return stdlog.New(log.WriterLevel(logrus.DebugLevel), "", 0)
}
