package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
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
	firstPassQPS   float64
}

// addFlags adds the flags; serviceAccount is the default of --discovery-service-account
// (serve sends a token of its own ServiceAccount to no kubelet; `pools`, run by an
// admin, reads them as kubectl would).
func (o *discoveryOptions) addFlags(fs *pflag.FlagSet, serviceAccount string) {
	fs.StringVar(&o.kubeletCAFile, "kubelet-ca-file", "", "CA bundle that verifies the kubelets' serving certificates for discovery.allowlistFrom: configz; in production, the CA that signs them (default: the cluster CA, right for kubelets with serverTLSBootstrap)")
	fs.BoolVar(&o.kubeletInsecureTLS, "kubelet-insecure-tls", false, "do not verify kubelets' serving certificates (kubelets with self-signed certificates, the kubelet default): whoever answers at a Node's reported address gets the discovery token and can forge that node's allowlist; only on a trusted node network")
	fs.StringVar(&o.serviceAccount, "discovery-service-account", serviceAccount, "[NAMESPACE/]NAME of the ServiceAccount whose short-lived tokens (TokenRequest API) are sent to kubelets instead of this process's own credentials (namespace default: $POD_NAMESPACE, else sysctl-placement); empty sends this process's own credentials")
	fs.DurationVar(&o.refresh, "discovery-refresh", 5*time.Minute, "how often every kubelet's /configz is read again (it is also read when its Node restarts or changes version or address)")
	fs.IntVar(&o.workers, "discovery-workers", 16, "kubelets read concurrently (the rate limits below bound the load)")
	fs.Float64Var(&o.qps, "discovery-qps", 20, "most kubelet reads per second; with --leader-elect only the elected replica reads, so this bounds the whole cluster's (each read may cost the kubelet a TokenReview and a SubjectAccessReview)")
	fs.Float64Var(&o.firstPassQPS, "discovery-first-pass-qps", 200, "most kubelet reads per second while every kubelet is read for the first time (a first install, or a leader with no complete shared result): 5,000 nodes in 25 s; then --discovery-qps")
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
	case o.firstPassQPS < o.qps:
		return usageError("--discovery-first-pass-qps (%v) must be at least --discovery-qps (%v)", o.firstPassQPS, o.qps)
	}
	return nil
}

// poolsConfig is how discovery reaches kubelets, for discovery.NewPools: client reads
// the Nodes, and the configz prober is built only when allowlists are read from
// kubelets.
func (o *discoveryOptions) poolsConfig(restConfig *rest.Config, client kubernetes.Interface, log logrus.FieldLogger) discovery.PoolsConfig {
	return discovery.PoolsConfig{
		Client:       client,
		NewProber:    func() (discovery.Prober, error) { return o.newProber(restConfig, client, log) },
		Refresh:      o.refresh,
		Workers:      o.workers,
		QPS:          o.qps,
		FirstPassQPS: o.firstPassQPS,
		Logger:       log,
	}
}

// newProber builds the prober that reads each kubelet's /configz as the flags say.
func (o *discoveryOptions) newProber(restConfig *rest.Config, client kubernetes.Interface, log logrus.FieldLogger) (discovery.Prober, error) {
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
	return prober, nil
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
	var format, webhookNamespace string
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
			if err := o.validate(); err != nil {
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
			pools, client, err := o.load(ctx, restConfig, g.logger)
			if err != nil {
				return err
			}
			if err := output.WritePools(s.out, pools.Report(), format); err != nil {
				return err
			}
			if format != "table" {
				return nil
			}
			return writeWebhookStatus(ctx, s.out, client, webhookNamespace, pools.NodeNames())
		},
	}
	o.addFlags(cmd.Flags())
	addWebhookNamespaceFlag(cmd.Flags(), &webhookNamespace)
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output: table, yaml or json")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long discovery may take")
	return cmd
}

// addWebhookNamespaceFlag adds --webhook-namespace, where writeWebhookStatus reads.
func addWebhookNamespaceFlag(fs *pflag.FlagSet, namespace *string) {
	fs.StringVar(namespace, "webhook-namespace", "sysctl-placement", "the webhook's namespace, where its replicas publish the discovery result and the policy backend's status (shown after the table)")
}

// writeWebhookStatus says, after the table of pools or audit, what the webhook's
// replicas place with: the elected one's published discovery result (when nodes, the
// cluster's node names, are known: discovery is on) and, in policy mode, whether the
// admission policies are in force. pools and audit print it alike.
func writeWebhookStatus(ctx context.Context, w io.Writer, client kubernetes.Interface, namespace string, nodes []string) error {
	st, err := discovery.ReadSharedStatus(ctx, client, namespace, nodes)
	if nodes != nil {
		return output.WriteSharedStatus(w, st, err, time.Now())
	}
	if err != nil {
		return nil // without discovery the result is optional; the ConfigMap may be absent
	}
	return output.WritePolicyStatus(w, st.Policy, time.Now())
}

// validate checks the flags before anything is read.
func (o *poolsFlags) validate() error {
	if o.allowlistFrom != "" && o.allowlistFrom != scheduling.AllowlistFromConfigz && o.allowlistFrom != scheduling.AllowlistFromAnnotation {
		return usageError("--allowlist-from %q is not supported: use configz or annotation", o.allowlistFrom)
	}
	return o.discovery.validate()
}

// load takes the pools as serve does (discovery.NewPools), in one pass: the config's
// static pools alone when the config has no discovery section (and no --pool-label or
// --allowlist-from asks for one), with each pool's nodes counted; otherwise discovery
// merged with the config. It returns the client it read them with.
func (o *poolsFlags) load(ctx context.Context, restConfig *rest.Config, log logrus.FieldLogger) (*discovery.Pools, kubernetes.Interface, error) {
	client, err := newKubeClient(restConfig)
	if err != nil {
		return nil, nil, exitError{code: 1, err: fmt.Errorf("could not build a Kubernetes client: %w", err)}
	}
	cfg := o.discovery.poolsConfig(restConfig, client, log)
	cfg.ConfigFile, cfg.PoolLabel, cfg.AllowlistFrom = o.configFile, o.poolLabel, o.allowlistFrom
	pools, err := discovery.NewPools(ctx, cfg)
	if err != nil {
		return nil, nil, exitError{code: 1, err: err}
	}
	if err := pools.Load(ctx); err != nil {
		return nil, nil, exitError{code: 1, err: err}
	}
	return pools, client, nil
}
