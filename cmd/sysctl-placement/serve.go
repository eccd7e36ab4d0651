package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/certs"
	"github.com/sysctl-placement/sysctl-placement/webhook"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/delegatedauth"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
)

// serveOptions are the flags of `serve`.
type serveOptions struct {
	configFile    string
	certFile      string
	keyFile       string
	clientCAFile  string
	listen        string
	metricsListen string
	development   bool
	profiling     bool
	// metricsSecure serves the metrics address over HTTPS and lets only callers the
	// API server authenticates and authorizes read /metrics and pprof.
	metricsSecure bool
	shutdownGrace time.Duration
	// shutdownDelay is the drain phase after SIGTERM: /readyz answers 503 and every
	// admission response asks the client to reconnect, while the listener stays open,
	// so that load balancers (Service endpoints) move new connections to other replicas
	// before this one stops accepting.
	shutdownDelay time.Duration
	resync        time.Duration
	// kubeAPIQPS and kubeAPIBurst rate-limit serve's own API calls (client-go's
	// defaults, 5 and 10, would hold the audit Events, one per placed pod, to 5 a
	// second: a scale-up of 500 pods would be audited over 100 seconds).
	kubeAPIQPS   float32
	kubeAPIBurst int
	// events configures the audit Events (see auditevents.go).
	events auditEventsOptions
	// discovery says how to reach kubelets when the config has a discovery section.
	discovery discoveryOptions
	// metricsAudience is the audience --metrics-secure asks TokenReviews to check.
	metricsAudience string
	// maxConcurrentAdmissions bounds the admission reviews in progress (see
	// webhook.AdmissionLimit).
	maxConcurrentAdmissions int
}

func (o *serveOptions) validate() error {
	switch {
	case o.configFile == "":
		return usageError("--config is required: the PlacementConfig file (see deploy/examples/placement-config.yaml)")
	case o.certFile == "" || o.keyFile == "":
		return usageError("--tls-cert-file and --tls-private-key-file are required: the API server only calls webhooks over HTTPS")
	case o.listen == "" || o.metricsListen == "":
		return usageError("--listen and --metrics-listen must not be empty")
	case o.maxConcurrentAdmissions < 1:
		return usageError("--max-concurrent-admissions must be at least 1")
	case o.shutdownGrace <= 0:
		return usageError("--shutdown-grace must be positive")
	case o.shutdownDelay < 0:
		return usageError("--shutdown-delay must not be negative")
	case !(o.kubeAPIQPS > 0) || o.kubeAPIBurst < 1: // !(> 0) refuses NaN too
		return usageError("--kube-api-qps and --kube-api-burst must be positive")
	}
	return o.discovery.validate()
}

func newServeCommand(g *globalOptions, s streams) *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve --config FILE --tls-cert-file FILE --tls-private-key-file FILE",
		Short: "Run the mutating and validating admission webhook",
		Long: `Serves /mutate and /validate over HTTPS, and /healthz, /readyz and /metrics on the
plain metrics port. In a pod it uses the pod's service account; elsewhere the kubeconfig
as kubectl loads it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if err := o.events.validate(); err != nil {
				return err
			}
			logger := g.logger
			if o.development {
				// --development is shorthand for text logs at debug level, unless the
				// log flags say otherwise.
				if !cmd.Flags().Changed("log-format") {
					logger.Formatter = &logrus.TextFormatter{FullTimestamp: true}
				}
				if !levelChanged(cmd) {
					logger.Level = logrus.DebugLevel
				}
			}
			restConfig, err := g.restConfig(true, "sysctl-placement/"+Version)
			if err != nil {
				return err
			}
			restConfig.QPS, restConfig.Burst = o.kubeAPIQPS, o.kubeAPIBurst
			return serve(cmd.Context(), o, restConfig, logger.WithField("version", currentBuild().Version))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.configFile, "config", "", "PlacementConfig file; reloaded when it changes (required)")
	fs.StringVar(&o.certFile, "tls-cert-file", "", "PEM serving certificate; reloaded when it changes (required)")
	fs.StringVar(&o.keyFile, "tls-private-key-file", "", "PEM private key of --tls-cert-file (required)")
	fs.StringVar(&o.clientCAFile, "client-ca-file", "", "if set, require a client certificate signed by this CA (the API server's, see docs)")
	fs.StringVar(&o.listen, "listen", ":8443", "HTTPS address of /mutate and /validate")
	fs.StringVar(&o.metricsListen, "metrics-listen", ":8080", "address of /healthz, /readyz and /metrics (plain HTTP unless --metrics-secure)")
	fs.BoolVar(&o.development, "development", false, "human-readable text logs at debug level (shorthand for --log-format text --log-level debug)")
	fs.BoolVar(&o.profiling, "profiling", false, "serve pprof under /debug/pprof/ on the metrics address")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", false, "serve --metrics-listen over HTTPS with the serving certificate; /metrics and pprof need a bearer token that the API server authenticates (TokenReview) and authorizes for the path (SubjectAccessReview, RBAC nonResourceURLs); /healthz and /readyz stay open")
	fs.StringVar(&o.metricsAudience, "metrics-audience", "", "with --metrics-secure, accept only bearer tokens issued for this audience (TokenReview spec.audiences), e.g. a projected token for \"sysctl-placement\", so a token sent to serve is useless against the API server; empty: the API server's own audiences")
	fs.IntVar(&o.maxConcurrentAdmissions, "max-concurrent-admissions", webhook.DefaultMaxConcurrentAdmissions, "most admission reviews decoded and answered at once; more wait up to 1s, then are answered 429 with Retry-After, which the API server retries (sized so the largest reviews fit the shipped 256Mi memory limit)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 20*time.Second, "how long in-flight requests may take after SIGTERM")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "after SIGTERM, how long /readyz answers 503 and connections are closed after each response before the listener closes (lets Service endpoints drop this replica)")
	fs.DurationVar(&o.resync, "resync", 10*time.Minute, "informer resync period")
	fs.Float32Var(&o.kubeAPIQPS, "kube-api-qps", 50, "most requests per second to the API server (the admission path makes none; mostly the audit Events, one per placed pod)")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 100, "requests to the API server allowed at once above --kube-api-qps")
	o.events.addFlags(fs)
	o.discovery.addFlags(fs, discovery.DefaultServiceAccount)
	return cmd
}

func serve(ctx context.Context, o serveOptions, restConfig *rest.Config, log *logrus.Entry) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	build := currentBuild()
	log.WithFields(logrus.Fields{"revision": build.Revision, "buildDate": build.BuildDate, "goVersion": build.GoVersion}).Info("starting sysctl-placement")
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newBuildInfoGauge(build))
	metrics := webhook.NewMetrics(registry)

	metaClient, err := metadata.NewForConfig(restConfig)
	if err != nil {
		return fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	namespaceCache, err := namespaces.NewCache(namespaces.CacheConfig{Client: metaClient, Resync: o.resync,
		Metrics: namespaces.NewMetrics(registry), Logger: log.WithField("component", "namespaces")})
	if err != nil {
		return err
	}
	podSecurity, err := webhook.NewPodSecurityConflicts(registry, log)
	if err != nil {
		return fmt.Errorf("could not register the Pod Security metric: %w", err)
	}
	if err := namespaceCache.Watch(podSecurity); err != nil {
		return fmt.Errorf("could not watch namespaces for Pod Security conflicts: %w", err)
	}
	audit, err := newAuditEvents(o.events, restConfig, registry, log)
	if err != nil {
		return err
	}
	client, err := newKubeClient(restConfig)
	if err != nil {
		return fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	// The config file's pools, merged with the discovered ones or with each pool's
	// node count, as `pools` and `audit` take them.
	poolsConfig := o.discovery.poolsConfig(restConfig, client, log)
	poolsConfig.ConfigFile, poolsConfig.ConfigMetrics = o.configFile, config.NewMetrics(registry)
	poolsConfig.Share, poolsConfig.Metrics = audit.discoveryShare(), discovery.NewMetrics(registry)
	pools, err := discovery.NewPools(ctx, poolsConfig)
	if err != nil {
		return err
	}
	store := pools.Store()

	reloader, err := certs.NewReloader(certs.ReloaderConfig{CertFile: o.certFile, KeyFile: o.keyFile, Logger: log, OnReload: metrics.ObserveServingCertificate})
	if err != nil {
		return err
	}
	tlsConfig, err := certs.ServerTLSConfig(reloader, o.clientCAFile)
	if err != nil {
		return err
	}

	whCfg := webhook.Config{Config: store, Namespaces: namespaceCache, Metrics: metrics, Logger: log, Workloads: audit.recorder}
	mutator, err := webhook.NewMutator(whCfg)
	if err != nil {
		return err
	}
	validator, err := webhook.NewValidator(whCfg)
	if err != nil {
		return err
	}
	recorder, err := webhook.NewRecorder(registry)
	if err != nil {
		return err
	}
	// One limit for both handlers: the API server calls /mutate and /validate for
	// the same pod, and memory is the process's.
	limit, err := webhook.NewAdmissionLimit(o.maxConcurrentAdmissions, webhook.DefaultAdmissionQueueWait, metrics)
	if err != nil {
		return err
	}
	mutateHandler, err := webhook.NewHandler(webhook.HandlerConfig{Webhook: mutator, Recorder: recorder, Logger: log, Limit: limit})
	if err != nil {
		return err
	}
	validateHandler, err := webhook.NewHandler(webhook.HandlerConfig{Webhook: validator, Recorder: recorder, Logger: log, Limit: limit})
	if err != nil {
		return err
	}

	admissionMux := http.NewServeMux()
	admissionMux.Handle("/mutate", mutateHandler)
	admissionMux.Handle("/validate", validateHandler)
	// draining is set after SIGTERM; see --shutdown-delay.
	var draining atomic.Bool
	admission := webhook.NewServer(closeWhenDraining(&draining, admissionMux), tlsConfig, webhook.AdmissionServerLimits(), newServerErrorLog(log))

	ready := func() error {
		if draining.Load() {
			return errors.New("shutting down")
		}
		if store.Current() == nil {
			return errors.New("no valid config loaded")
		}
		if !namespaceCache.HasSynced() {
			return errors.New("the namespace cache has not synced")
		}
		if !pools.FirstPassDone() {
			return errors.New("pool discovery has not finished its first pass")
		}
		return nil
	}
	opsMux := http.NewServeMux()
	opsMux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	opsMux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	// protect guards what reveals the process (metrics, profiles); probes stay open
	// for the kubelet, which sends no token.
	protect := func(h http.HandlerFunc) http.Handler { return h }
	var opsTLS *tls.Config
	if o.metricsSecure {
		filter, err := delegatedauth.NewFilterForConfig(restConfig, o.metricsAudience, log)
		if err != nil {
			return err
		}
		protect = func(h http.HandlerFunc) http.Handler { return filter.Wrap(h) }
		if opsTLS, err = certs.ServerTLSConfig(reloader, ""); err != nil {
			return err
		}
	}
	opsMux.Handle("/metrics", protect(promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}).ServeHTTP))
	if o.profiling {
		opsMux.Handle("/debug/pprof/", protect(pprof.Index))
		opsMux.Handle("/debug/pprof/cmdline", protect(pprof.Cmdline))
		opsMux.Handle("/debug/pprof/profile", protect(pprof.Profile))
		opsMux.Handle("/debug/pprof/symbol", protect(pprof.Symbol))
		opsMux.Handle("/debug/pprof/trace", protect(pprof.Trace))
	}
	ops := webhook.NewServer(opsMux, opsTLS, webhook.OpsServerLimits(), newServerErrorLog(log))

	admissionListener, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("could not listen on --listen %s: %w", o.listen, err)
	}
	opsListener, err := net.Listen("tcp", o.metricsListen)
	if err != nil {
		admissionListener.Close()
		return fmt.Errorf("could not listen on --metrics-listen %s: %w", o.metricsListen, err)
	}
	log.WithFields(logrus.Fields{"listen": admissionListener.Addr().String(), "metricsListen": opsListener.Addr().String()}).Info("serving")

	var wg sync.WaitGroup
	// Room for an error from every goroutine, so none blocks after the first.
	errs := make(chan error, 8)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				if name != "" {
					err = fmt.Errorf("%s: %w", name, err)
				}
				errs <- err
			}
		}()
	}
	namespaceCache.Start(ctx)
	goRun("", func() error { return pools.Run(ctx) }) // its errors name the part that failed
	goRun("audit events", func() error { return audit.Run(ctx) })
	goRun("certificate reloader", func() error { return reloader.Run(ctx) })
	goRun("metrics server", func() error {
		if opsTLS != nil {
			return ignoreClosed(ops.ServeTLS(opsListener, "", ""))
		}
		return ignoreClosed(ops.Serve(opsListener))
	})
	goRun("webhook server", func() error { return ignoreClosed(admission.ServeTLS(admissionListener, "", "")) })

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight requests")
	case runErr = <-errs:
		log.WithError(runErr).Error("shutting down")
	}
	if runErr == nil && o.shutdownDelay > 0 {
		drain(&draining, o.shutdownDelay, errs, log)
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), o.shutdownGrace)
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

// drain is the phase between SIGTERM and closing the listener: /readyz fails so the
// replica leaves the load balancer's endpoints, while requests still arriving (sent
// before the endpoints changed) are answered, each with Connection: close so the client
// reconnects through the load balancer. Idle connections are left alone until
// Shutdown: closing them now could race with a request the client is sending on one.
func drain(draining *atomic.Bool, delay time.Duration, errs <-chan error, log *logrus.Entry) {
	draining.Store(true)
	log.WithField("shutdownDelay", delay.String()).Info("draining: /readyz answers 503 until the listener closes")
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case err := <-errs:
		log.WithError(err).Error("a server failed while draining")
	}
}

// closeWhenDraining asks the client to close the connection after the response once
// draining is set; net/http then closes it after writing the response.
func closeWhenDraining(draining *atomic.Bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
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
