package auditevents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the Lease the replicas compete for, in the webhook's namespace.
const LeaseName = "sysctl-placement-audit-events"

// LeaderElectionConfig configures RunWhileLeader.
type LeaderElectionConfig struct {
	// Client reads and writes the Lease (required; RBAC leases get, create, update in
	// Namespace).
	Client kubernetes.Interface
	// Namespace holds the Lease (required): the webhook's own namespace.
	Namespace string
	// Name of the Lease. Default LeaseName.
	Name string
	// Identity of this replica (required; unique per process, e.g. pod name + UUID).
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod: client-go's leader election timing.
	// Defaults 15s, 10s, 2s, as kube-controller-manager's.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Leads says what the leader does, for the log. Default "recording pod Events".
	Leads string
	// Metrics shows whether this replica leads; nil shows nothing.
	Metrics *Metrics
	// Logger gets leadership changes; nil logs nothing.
	Logger logrus.FieldLogger
}

func (c *LeaderElectionConfig) defaults() error {
	switch {
	case c.Client == nil:
		return errors.New("a Kubernetes client is required")
	case c.Namespace == "":
		return errors.New("a namespace for the lease is required (--leader-election-namespace)")
	case c.Identity == "":
		return errors.New("an identity is required")
	}
	if c.Name == "" {
		c.Name = LeaseName
	}
	if c.Leads == "" {
		c.Leads = "recording pod Events"
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 15 * time.Second
	}
	if c.RenewDeadline <= 0 {
		c.RenewDeadline = 10 * time.Second
	}
	if c.RetryPeriod <= 0 {
		c.RetryPeriod = 2 * time.Second
	}
	if c.Logger == nil {
		l := logrus.New()
		l.Out = io.Discard
		c.Logger = l
	}
	return nil
}

// RunWhileLeader calls run with a context that ends when this replica stops leading,
// and competes again after that, until ctx ends. run must return when its context
// ends. The admission path does not depend on it: a replica that never leads serves
// webhooks all the same.
func RunWhileLeader(ctx context.Context, cfg LeaderElectionConfig, run func(context.Context)) error {
	if err := cfg.defaults(); err != nil {
		return fmt.Errorf("invalid leader election configuration: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	log := cfg.Logger.WithFields(logrus.Fields{"lease": cfg.Namespace + "/" + cfg.Name, "identity": cfg.Identity})
	for ctx.Err() == nil {
		acquired := make(chan context.Context, 1)
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			Name:            cfg.Name,
			LeaseDuration:   cfg.LeaseDuration,
			RenewDeadline:   cfg.RenewDeadline,
			RetryPeriod:     cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(leading context.Context) { acquired <- leading },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("invalid leader election configuration: %w", err)
		}
		electionDone := make(chan struct{})
		go func() {
			defer close(electionDone)
			elector.Run(ctx)
		}()
		select {
		case leading := <-acquired:
			log.Info("leading: " + cfg.Leads)
			cfg.Metrics.setLeader(true)
			run(leading)
			cfg.Metrics.setLeader(false)
			<-electionDone
			if ctx.Err() == nil {
				log.Warn("lost the lease; competing again")
			}
		case <-electionDone:
		}
	}
	return nil
}
