package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// discoveryOptions are the flags that say how to reach kubelets, shared by serve and
// pools. What to discover (poolLabel, allowlistFrom) is in the config file.
type discoveryOptions struct {
	kubeletCAFile      string
	kubeletInsecureTLS bool
	// serviceAccount ("[namespace/]name") is whose tokens go to kubelets; empty sends
	// the process's own credentials.
	serviceAccount string
	refresh        time.Duration
	workers        int
	qps            float64
}

// addFlags adds the flags; serviceAccount is the default of --discovery-service-account
// (serve sends a token of its own ServiceAccount to no kubelet; `pools`, run by an
// admin, reads them as kubectl would).
func (o *discoveryOptions) addFlags(fs *pflag.FlagSet, serviceAccount string) {
	fs.StringVar(&o.kubeletCAFile, "kubelet-ca-file", "", "CA bundle that verifies the kubelets' serving certificates for discovery.allowlistFrom: configz; in production, the CA that signs them (default: the cluster CA, right for kubelets with serverTLSBootstrap)")
	fs.BoolVar(&o.kubeletInsecureTLS, "kubelet-insecure-tls", false, "do not verify kubelets' serving certificates (kubelets with self-signed certificates, the kubelet default): whoever answers at a Node's reported address gets the discovery token and can forge that node's allowlist; only on a trusted node network")
	fs.StringVar(&o.serviceAccount, "discovery-service-account", serviceAccount, "[NAMESPACE/]NAME of the ServiceAccount whose short-lived tokens (TokenRequest API) are sent to kubelets instead of this process's own credentials (namespace default: $POD_NAMESPACE, else sysctl-placement); empty sends this process's own credentials")
	fs.DurationVar(&o.refresh, "discovery-refresh", 5*time.Minute, "how often every kubelet's /configz is read again (it is also read when its Node restarts or changes version or address)")
	fs.IntVar(&o.workers, "discovery-workers", 4, "kubelets read concurrently")
	fs.Float64Var(&o.qps, "discovery-qps", 20, "most kubelet reads per second; with --leader-elect only the elected replica reads, so this bounds the whole cluster's (each read may cost the kubelet a TokenReview and a SubjectAccessReview)")
}

// podNamespace is the webhook's namespace: $POD_NAMESPACE in its pod, else the
// shipped one.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "sysctl-placement"
}

func (o *discoveryOptions) validate() error {
	switch {
	case o.kubeletCAFile != "" && o.kubeletInsecureTLS:
		return usageError("--kubelet-ca-file and --kubelet-insecure-tls contradict each other: give one")
	case o.refresh <= 0:
		return usageError("--discovery-refresh must be positive")
	case o.workers < 1:
		return usageError("--discovery-workers must be at least 1")
	case o.qps <= 0:
		return usageError("--discovery-qps must be positive")
	}
	return nil
}

// newDiscoverer builds the Discoverer the config asks for, or nil when it has no
// discovery section. Results go to publisher; share, if not nil, makes one elected
// replica read the kubelets for all.
func (o *discoveryOptions) newDiscoverer(d *scheduling.Discovery, restConfig *rest.Config, publisher discovery.Publisher, metrics *discovery.Metrics, share *discovery.ShareConfig, log logrus.FieldLogger) (*discovery.Discoverer, error) {
	if d == nil {
		return nil, nil
	}
	client, err := newKubeClient(restConfig)
	if err != nil {
		return nil, fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	cfg := discovery.Config{
		Client:    client,
		PoolLabel: d.PoolLabel,
		Source:    discovery.Source(d.AllowlistFrom),
		Publisher: publisher,
		Refresh:   o.refresh,
		Workers:   o.workers,
		QPS:       o.qps,
		Share:     share,
		Metrics:   metrics,
		Logger:    log,
	}
	if cfg.Source == "" {
		cfg.Source = discovery.SourceConfigz
	}
	if cfg.Source == discovery.SourceConfigz {
		pc := discovery.ProberConfig{Rest: restConfig, CAFile: o.kubeletCAFile, Insecure: o.kubeletInsecureTLS}
		if o.serviceAccount != "" {
			namespace, name, err := cache.SplitMetaNamespaceKey(o.serviceAccount)
			if err != nil {
				return nil, usageError("--discovery-service-account %q: %v", o.serviceAccount, err)
			}
			if namespace == "" {
				namespace = podNamespace()
			}
			pc.TokenRequest = &discovery.TokenRequestConfig{Client: client, Namespace: namespace, ServiceAccount: name}
			log.WithField("serviceAccount", namespace+"/"+name).Info("discovery: kubelets get tokens of this ServiceAccount only")
		}
		if o.kubeletInsecureTLS {
			log.Warn("discovery: --kubelet-insecure-tls: kubelets' serving certificates are NOT verified; whoever answers at the address a Node reports receives the discovery token and can forge that node's allowlist. Give --kubelet-ca-file in production")
		}
		prober, err := discovery.NewConfigzProber(pc)
		if err != nil {
			return nil, err
		}
		cfg.Prober = prober
	}
	return discovery.New(cfg)
}

// poolsFlags are the flags of `pools` that `audit` shares: where the pools come from.
type poolsFlags struct {
	configFile    string
	poolLabel     string
	allowlistFrom string
	discovery     discoveryOptions
}

func (o *poolsFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.configFile, "config", "", "PlacementConfig file, as given to serve (default: no static pools, discovery by --pool-label); without a discovery section only its pools are used, as serve uses them")
	fs.StringVar(&o.poolLabel, "pool-label", "", "node label grouping nodes into pools, overriding the config's discovery.poolLabel (default: the config's, else the first of "+strings.Join(discovery.WellKnownPoolLabels, ", ")+" found on a node)")
	fs.StringVar(&o.allowlistFrom, "allowlist-from", "", "configz or annotation, overriding the config's discovery.allowlistFrom (default configz)")
	o.discovery.addFlags(fs, "")
}

func newPoolsCommand(g *globalOptions, s streams) *cobra.Command {
	var o poolsFlags
	var format string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "pools [--config FILE] [--pool-label LABEL] [-o table|yaml|json]",
		Short: "Show the pools of a live cluster as the webhook sees them",
		Long: `Prints the pools the webhook would place pods on, as serve sees them: the config's
static pools, merged with the pools discovered from the live Nodes when the config has
a discovery section, --pool-label or --allowlist-from is given, or there is no
--config. Each pool shows its node count and problems (a config pool that matches no
node, kubelets that disagree or cannot be read).

Step 0 of installing: run it with --config on the config you will install; every pool
should match nodes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "yaml" && format != "json" {
				return usageError("-o %q is not supported: use table, yaml or json", format)
			}
			if err := o.discovery.validate(); err != nil {
				return err
			}
			if !levelChanged(cmd) {
				g.logger.Level = logrus.ErrorLevel // problems are in the output; do not print them twice
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			restConfig, err := g.restConfig(false, "sysctl-placement-pools/"+Version)
			if err != nil {
				return exitError{code: 1, err: err}
			}
			loaded, err := o.loadLikeServe(ctx, restConfig, g.logger)
			if err != nil {
				return err
			}
			return output.WritePools(s.out, loaded.report, format)
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output: table, yaml or json")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long discovery may take")
	return cmd
}

// loadedPools are the pools the webhook would use, as `pools` shows and `audit` plans
// with.
type loadedPools struct {
	// compiled is the placement table: the config's pools and policy merged with the
	// discovered pools.
	compiled *scheduling.Compiled
	// report is every pool with its node count and problems.
	report []discovery.PoolStatus
	client kubernetes.Interface
}

// loadLikeServe takes the pools as serve would: the config's static pools alone when
// the config has no discovery section (and no --pool-label or --allowlist-from asks for
// one), with each pool's nodes counted; otherwise discovery merged with the config.
func (o *poolsFlags) loadLikeServe(ctx context.Context, restConfig *rest.Config, log logrus.FieldLogger) (*loadedPools, error) {
	if o.configFile == "" || o.poolLabel != "" || o.allowlistFrom != "" {
		return o.load(ctx, restConfig, log)
	}
	static, err := poolsStaticConfig(o.configFile)
	if err != nil {
		return nil, exitError{code: 1, err: err}
	}
	if static.Config().Discovery != nil {
		return o.load(ctx, restConfig, log)
	}
	client, err := newKubeClient(restConfig)
	if err != nil {
		return nil, exitError{code: 1, err: fmt.Errorf("could not build a Kubernetes client: %w", err)}
	}
	var nodes []*corev1.Node
	err = pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return client.CoreV1().Nodes().List(ctx, opts)
	}).EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		nodes = append(nodes, obj.(*corev1.Node))
		return nil
	})
	if err != nil {
		return nil, exitError{code: 1, err: fmt.Errorf("could not list nodes (check the kubeconfig and RBAC: list nodes): %w", err)}
	}
	store, combiner, err := newPoolsCombiner(static, log)
	if err != nil {
		return nil, err
	}
	combiner.SetDiscovered(nil, nodes)
	return &loadedPools{compiled: store.Current(), report: combiner.Report(), client: client}, nil
}

// newPoolsCombiner merges the static config with what discovery or a node list adds,
// into a store, as serve does.
func newPoolsCombiner(static *scheduling.Compiled, log logrus.FieldLogger) (*config.Store, *discovery.Combiner, error) {
	store := config.NewStore(nil)
	combiner, err := discovery.NewCombiner(discovery.CombinerConfig{Sink: store, Logger: log})
	if err != nil {
		return nil, nil, exitError{code: 1, err: err}
	}
	combiner.Set(static)
	return store, combiner, nil
}

// load runs discovery once, as serve does at start-up, and merges it with the config.
func (o *poolsFlags) load(ctx context.Context, restConfig *rest.Config, log logrus.FieldLogger) (*loadedPools, error) {
	static, err := poolsStaticConfig(o.configFile)
	if err != nil {
		return nil, exitError{code: 1, err: err}
	}
	disc := static.Config().Discovery
	if o.poolLabel != "" || o.allowlistFrom != "" || disc == nil {
		d := scheduling.Discovery{AllowlistFrom: scheduling.AllowlistFromConfigz}
		if disc != nil {
			d = *disc
		}
		if o.poolLabel != "" {
			d.PoolLabel = o.poolLabel
		}
		if o.allowlistFrom != "" {
			d.AllowlistFrom = o.allowlistFrom
		}
		disc = &d
	}
	if disc.AllowlistFrom != scheduling.AllowlistFromConfigz && disc.AllowlistFrom != scheduling.AllowlistFromAnnotation {
		return nil, usageError("--allowlist-from %q is not supported: use configz or annotation", disc.AllowlistFrom)
	}
	client, err := newKubeClient(restConfig)
	if err != nil {
		return nil, exitError{code: 1, err: fmt.Errorf("could not build a Kubernetes client: %w", err)}
	}
	if disc.PoolLabel == "" {
		if disc.PoolLabel, err = detectPoolLabel(ctx, client); err != nil {
			return nil, exitError{code: 1, err: err}
		}
	}

	store, combiner, err := newPoolsCombiner(static, log)
	if err != nil {
		return nil, err
	}
	d, err := o.discovery.newDiscoverer(disc, restConfig, combiner, nil, nil, log)
	if err != nil {
		return nil, exitError{code: 1, err: err}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	waitErr := d.WaitForFirstPass(ctx)
	stop()
	<-done
	if waitErr != nil {
		return nil, exitError{code: 1, err: fmt.Errorf("%w (could the nodes be listed? check the kubeconfig and RBAC: list/watch nodes)", waitErr)}
	}
	return &loadedPools{compiled: store.Current(), report: combiner.Report(), client: client}, nil
}

// poolsStaticConfig loads the config file, or an empty one (no static pools).
func poolsStaticConfig(path string) (*scheduling.Compiled, error) {
	if path != "" {
		compiled, _, err := config.LoadFile(path)
		return compiled, err
	}
	return scheduling.CompilePools(scheduling.Policy{}, nil)
}

// detectPoolLabel returns the first well-known pool label any node carries.
func detectPoolLabel(ctx context.Context, client kubernetes.Interface) (string, error) {
	for _, label := range discovery.WellKnownPoolLabels {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: label, Limit: 1})
		if err != nil {
			return "", fmt.Errorf("could not list nodes: %w", err)
		}
		if len(list.Items) > 0 {
			return label, nil
		}
	}
	return "", fmt.Errorf("no node carries any of %s: give the label that names your pools with --pool-label or discovery.poolLabel in --config", strings.Join(discovery.WellKnownPoolLabels, ", "))
}
