package main

// serve wires the webhook process from serve's flags: metrics, the namespace cache,
// the audit Events, the pools, the serving certificate and the admission handlers.
// Package webhook/lifecycle then runs it: listeners, health, drain and shutdown.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/sysctl-placement/sysctl-placement/certs"
	"github.com/sysctl-placement/sysctl-placement/webhook"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/delegatedauth"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
	"github.com/sysctl-placement/sysctl-placement/webhook/lifecycle"
	"github.com/sysctl-placement/sysctl-placement/webhook/namespaces"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

func serve(ctx context.Context, o serveOptions, restConfig *rest.Config, log *logrus.Entry) error {
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
	if o.admission == admissionPolicy {
		syncer, err := newPolicySyncer(o, client, store, registry, audit.identity, log)
		if err != nil {
			return err
		}
		audit.alsoLeading = append(audit.alsoLeading, syncer.Run)
	}

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
	recorder, err := review.NewRecorder(registry)
	if err != nil {
		return err
	}
	// One limit for both handlers: the API server calls /mutate and /validate for
	// the same pod, and memory is the process's.
	limit, err := webhook.NewAdmissionLimit(o.maxConcurrentAdmissions, webhook.DefaultAdmissionQueueWait, metrics)
	if err != nil {
		return err
	}
	mutateHandler, err := review.NewHandler(review.HandlerConfig{Webhook: mutator, Recorder: recorder, Logger: log, Limit: limit})
	if err != nil {
		return err
	}
	validateHandler, err := review.NewHandler(review.HandlerConfig{Webhook: validator, Recorder: recorder, Logger: log, Limit: limit})
	if err != nil {
		return err
	}

	admissionMux := http.NewServeMux()
	admissionMux.Handle("/mutate", mutateHandler)
	admissionMux.Handle("/validate", validateHandler)
	ready := func() error {
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
	var protect func(http.Handler) http.Handler
	var opsTLS *tls.Config
	if o.metricsSecure {
		filter, err := delegatedauth.NewFilterForConfig(restConfig, o.metricsAudience, log)
		if err != nil {
			return err
		}
		protect = filter.Wrap
		if opsTLS, err = certs.ServerTLSConfig(reloader, ""); err != nil {
			return err
		}
	}

	admissionListener, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("could not listen on --listen %s: %w", o.listen, err)
	}
	opsListener, err := net.Listen("tcp", o.metricsListen)
	if err != nil {
		_ = admissionListener.Close() // the listen error is the one to report
		return fmt.Errorf("could not listen on --metrics-listen %s: %w", o.metricsListen, err)
	}
	return lifecycle.Run(ctx, lifecycle.Config{
		Admission: admissionMux, AdmissionTLS: tlsConfig, AdmissionListener: admissionListener,
		OpsListener: opsListener, OpsTLS: opsTLS, Protect: protect, Profiling: o.profiling,
		Metrics: promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}),
		Ready:   ready,
		Tasks: []lifecycle.Task{
			{Name: "namespace cache", Run: func(ctx context.Context) error { namespaceCache.Start(ctx); return nil }},
			{Run: pools.Run}, // its errors name the part that failed
			{Name: "audit events", Run: audit.Run},
			{Name: "certificate reloader", Run: reloader.Run},
		},
		ShutdownDelay: o.shutdownDelay, ShutdownGrace: o.shutdownGrace, Logger: log,
	})
}
