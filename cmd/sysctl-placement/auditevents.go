package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"

	"github.com/sysctl-placement/sysctl-placement/webhook/auditevents"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// auditEventsOptions are the flags of `serve` that concern audit Events.
type auditEventsOptions struct {
	leaderElect             bool
	leaderElectionNamespace string
	maxPodAge               time.Duration
	queueSize               int
	workloadInterval        time.Duration
}

func (o *auditEventsOptions) addFlags(fs *pflag.FlagSet) {
	defaultNamespace := podNamespace()
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect one replica (Lease "+auditevents.LeaseName+") to record pod Events; false records them from this replica unconditionally")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", defaultNamespace, "namespace of the leader-election Lease (default: $POD_NAMESPACE, else sysctl-placement)")
	fs.DurationVar(&o.maxPodAge, "events-max-pod-age", 30*time.Minute, "pods older than this get no Event; keep it below kube-apiserver's --event-ttl (1h by default) so a new leader never records one twice")
	fs.IntVar(&o.queueSize, "events-queue-size", 1024, "Events on workloads waiting to be written; more are dropped (sysctl_placement_events_dropped_total) so admission never waits")
	fs.DurationVar(&o.workloadInterval, "events-workload-interval", 10*time.Minute, "report the same workload and reason (e.g. a ReplicaSet whose pods keep being denied) at most once per interval")
}

func (o auditEventsOptions) validate() error {
	switch {
	case o.leaderElect && o.leaderElectionNamespace == "":
		return usageError("--leader-election-namespace must not be empty: set it, or POD_NAMESPACE, to the webhook's namespace")
	case o.maxPodAge <= 0:
		return usageError("--events-max-pod-age must be positive")
	case o.queueSize <= 0:
		return usageError("--events-queue-size must be positive")
	case o.workloadInterval <= 0:
		return usageError("--events-workload-interval must be positive")
	}
	return nil
}

// auditEvents records what the webhook did as Events: the Recorder (the webhook's
// WorkloadObserver, on every replica) and the pod Controller (on the leader).
type auditEvents struct {
	opts       auditEventsOptions
	client     kubernetes.Interface
	recorder   *auditevents.Recorder
	controller *auditevents.Controller
	metrics    *auditevents.Metrics
	identity   string
	log        *logrus.Entry
	// alsoLeading run beside the pod Controller while this replica leads (the policy
	// backend's sync), on the same Lease: one elected replica does both.
	alsoLeading []func(context.Context)
}

func newAuditEvents(o auditEventsOptions, restConfig *rest.Config, registry prometheus.Registerer, log *logrus.Entry) (*auditEvents, error) {
	client, err := newKubeClient(restConfig)
	if err != nil {
		return nil, fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	metaClient, err := metadata.NewForConfig(restConfig)
	if err != nil {
		return nil, fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	name := os.Getenv("POD_NAME")
	if name == "" {
		if name, err = os.Hostname(); err != nil || name == "" {
			name = "sysctl-placement"
		}
	}
	log = log.WithField("component", "audit-events")
	metrics := auditevents.NewMetrics(registry)
	recorder, err := auditevents.NewRecorder(auditevents.RecorderConfig{
		Sink:             &events.EventSinkImpl{Interface: client.EventsV1()},
		Identity:         name,
		QueueSize:        o.queueSize,
		WorkloadInterval: o.workloadInterval,
		Metrics:          metrics,
		Logger:           log,
	})
	if err != nil {
		return nil, err
	}
	controller, err := auditevents.NewController(auditevents.ControllerConfig{
		Client: client, Metadata: metaClient, Recorder: recorder, MaxPodAge: o.maxPodAge, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return &auditEvents{
		opts: o, client: client, recorder: recorder, controller: controller, metrics: metrics,
		// Unique per process, so a restarted pod with the same name never inherits a
		// lease it did not renew.
		identity: name + "_" + string(uuid.NewUUID()),
		log:      log,
	}, nil
}

// Run writes workload Events and, while leading (or always without --leader-elect),
// pod Events, until ctx ends. Readiness does not depend on it.
func (a *auditEvents) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.recorder.Run(ctx) })
	runController := func(ctx context.Context) {
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, run := range a.alsoLeading {
			wg.Go(func() { run(ctx) })
		}
		if err := a.controller.Run(ctx); err != nil {
			a.log.WithError(err).Error("the audit events controller stopped")
		}
	}
	if !a.opts.leaderElect {
		runController(ctx)
		return nil
	}
	return auditevents.RunWhileLeader(ctx, auditevents.LeaderElectionConfig{
		Client: a.client, Namespace: a.opts.leaderElectionNamespace, Identity: a.identity,
		Metrics: a.metrics, Logger: a.log,
	}, runController)
}

// discoveryShare makes one replica, elected on a Lease of its own with the same
// mechanism as the audit Events, read the kubelets for all replicas (see
// discovery.ShareConfig); nil without --leader-elect, where every replica reads them.
func (a *auditEvents) discoveryShare() *discovery.ShareConfig {
	if !a.opts.leaderElect {
		return nil
	}
	return &discovery.ShareConfig{
		Namespace: a.opts.leaderElectionNamespace,
		Identity:  a.identity,
		Elect: func(ctx context.Context, lead func(context.Context)) error {
			// Slower than the audit Events' election: the published result stays in
			// force while leadership changes hands, and kubelets are re-read every few
			// minutes, so a takeover within a minute is plenty. Followers then poll the
			// Lease every 10s instead of 2s, and an API server outage costs a fifth of the
			// retry log lines of a second fast election.
			return auditevents.RunWhileLeader(ctx, auditevents.LeaderElectionConfig{
				Client: a.client, Namespace: a.opts.leaderElectionNamespace, Name: discovery.SharedName,
				Identity: a.identity, Leads: "reading every kubelet's /configz for all replicas",
				LeaseDuration: 60 * time.Second, RenewDeadline: 40 * time.Second, RetryPeriod: 10 * time.Second,
				Logger: a.log.WithField("component", "discovery"),
			}, lead)
		},
	}
}
