package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/sysctl-placement/sysctl-placement/webhook/logging"
)

// globalOptions are the flags every command takes: how to reach the cluster, as
// kubectl does, and how to log.
type globalOptions struct {
	kubeconfig string
	// overrides are kubectl's connection flags (--context, --as, --server, …), bound
	// by client-go's own clientcmd.BindOverrideFlags and applied by it.
	overrides clientcmd.ConfigOverrides
	// connection holds those flags and --kubeconfig, to tell whether the user gave
	// one.
	connection *pflag.FlagSet
	logFormat  string
	logLevel   string

	// logger is built from the flags before a command runs.
	logger *logrus.Logger
}

// connectionFlags are kubectl's flags for reaching a cluster, spelled as kubectl
// spells them, less --namespace: no command acts on the kubeconfig's current
// namespace. audit (-n, --namespace: the one namespace to audit) and certs
// (--namespace: the webhook's) each keep their own.
func connectionFlags() clientcmd.ConfigOverrideFlags {
	names := clientcmd.RecommendedConfigOverrideFlags("")
	names.ContextOverrideFlags.Namespace = clientcmd.FlagInfo{}
	return names
}

func (g *globalOptions) addFlags(fs *pflag.FlagSet) {
	g.connection = pflag.NewFlagSet("connection", pflag.ContinueOnError)
	g.connection.StringVar(&g.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, which may list several files, else ~/.kube/config; serve and certs use the in-cluster config when run in a pod)")
	clientcmd.BindOverrideFlags(&g.overrides, g.connection, connectionFlags())
	fs.AddFlagSet(g.connection)
	fs.StringVar(&g.logFormat, "log-format", "json", "log format: json or text; client-go's own messages use it too")
	fs.StringVar(&g.logLevel, "log-level", "info", "log level: trace, debug, info, warn or error")
}

// setUpLogging builds the logger from --log-format and --log-level and routes
// client-go's klog output through it, so a command writes one stream in one format.
func (g *globalOptions) setUpLogging(out io.Writer) error {
	if g.logFormat != "json" && g.logFormat != "text" {
		return usageError("--log-format %q is not supported: use json or text", g.logFormat)
	}
	level, err := logrus.ParseLevel(g.logLevel)
	if err != nil {
		return usageError("--log-level %q is not supported: use trace, debug, info, warn or error", g.logLevel)
	}
	l := logrus.New()
	l.Out = out
	l.Level = level
	if g.logFormat == "text" {
		l.Formatter = &logrus.TextFormatter{FullTimestamp: true}
	} else {
		// logrus's JSON, written without reflection: serve writes a line per admission.
		l.Formatter = logging.JSONFormatter{}
	}
	g.logger = l
	klog.SetLogger(newKlogLogger(l))
	// klog drops V(n) messages above its own verbosity before the logger sees them:
	// open it as far as the level asks (see logrusSink.level).
	verbosity := "0"
	switch level {
	case logrus.DebugLevel:
		verbosity = "4"
	case logrus.TraceLevel:
		verbosity = "10"
	}
	var klogFlags flag.FlagSet
	klog.InitFlags(&klogFlags)
	if err := klogFlags.Set("v", verbosity); err != nil {
		return fmt.Errorf("could not set client-go's log verbosity: %w", err)
	}
	return nil
}

// levelChanged reports whether the user gave --log-level, so a command may pick a
// quieter default of its own.
func levelChanged(cmd *cobra.Command) bool {
	f := cmd.Flags().Lookup("log-level")
	return f != nil && f.Changed
}

// client is a client for a command that only talks to the API server: restConfig's,
// through newKubeClient.
func (g *globalOptions) client(inClusterFirst bool, userAgent string) (kubernetes.Interface, error) {
	restConfig, err := g.restConfig(inClusterFirst, userAgent)
	if err != nil {
		return nil, err
	}
	client, err := newKubeClient(restConfig)
	if err != nil {
		return nil, fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	return client, nil
}

// restConfig loads the cluster credentials the way kubectl does: --kubeconfig, else
// $KUBECONFIG (several files are merged), else ~/.kube/config; kubectl's connection
// flags (--context, --as, --server, --token, --request-timeout, …) override it as
// they do kubectl's. Exec credential plugins and auth providers work because clientcmd
// builds them into the rest.Config. inClusterFirst (serve, running in a pod) uses the
// pod's service account unless a connection flag is given.
func (g *globalOptions) restConfig(inClusterFirst bool, userAgent string) (*rest.Config, error) {
	// clientcmd's own message names neither the flag nor the value.
	if _, err := clientcmd.ParseTimeout(g.overrides.Timeout); g.overrides.Timeout != "" && err != nil {
		return nil, usageError("--request-timeout %q is not a duration: use 30s, 2m or 0 (no timeout)", g.overrides.Timeout)
	}
	if inClusterFirst && !g.connectionFlagGiven() {
		cfg, err := rest.InClusterConfig()
		if err == nil {
			cfg.UserAgent = userAgent
			return cfg, nil
		}
		if !errors.Is(err, rest.ErrNotInCluster) {
			return nil, fmt.Errorf("could not load the in-cluster config: %w", err)
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = g.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &g.overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("could not load the kubeconfig (set --kubeconfig or $KUBECONFIG, or --context): %w", err)
	}
	cfg.UserAgent = userAgent
	return cfg, nil
}

// connectionFlagGiven reports whether the user gave --kubeconfig or any of kubectl's
// connection flags.
func (g *globalOptions) connectionFlagGiven() bool {
	given := false
	if g.connection != nil { // nil when a test builds the options without flags
		g.connection.VisitAll(func(f *pflag.Flag) { given = given || f.Changed })
	}
	return given
}
