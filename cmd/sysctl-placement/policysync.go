package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"k8s.io/client-go/kubernetes"

	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
	"github.com/sysctl-placement/sysctl-placement/webhook/policysync"
)

// newPolicySyncer wires serve --admission=policy: the elected replica keeps the
// admission policies in sync with the pool table the webhook uses, and publishes how
// that goes beside the discovery result, where `pools` reads it.
func newPolicySyncer(o serveOptions, client kubernetes.Interface, store *config.Store, registry prometheus.Registerer, identity string, log *logrus.Entry) (*policysync.Syncer, error) {
	namespace := o.events.leaderElectionNamespace
	return policysync.New(policysync.Config{
		Source: store, Client: client, Options: o.policy, Identity: identity, Resync: o.resync,
		Publish: func(ctx context.Context, st discovery.PolicyStatus) error {
			return discovery.PublishPolicyStatus(ctx, client, namespace, st)
		},
		Metrics: policysync.NewMetrics(registry),
		Logger:  log.WithField("component", "policy-backend"),
	})
}
