package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/config"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// discoveryOptions are the flags that say how to reach kubelets, shared by serve and
// pools. What to discover (poolLabel, allowlistFrom) is in the config file.
type discoveryOptions struct {
	kubeletCAFile      string
	kubeletInsecureTLS bool
	refresh            time.Duration
	workers            int
}

func (o *discoveryOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.kubeletCAFile, "kubelet-ca-file", "", "CA bundle that verifies the kubelets' serving certificates for discovery.allowlistFrom: configz (default: the cluster CA, right for kubelets with serverTLSBootstrap)")
	fs.BoolVar(&o.kubeletInsecureTLS, "kubelet-insecure-tls", false, "do not verify kubelets' serving certificates (kubelets with self-signed certificates, the kubelet default); the service account token is still sent, so only on a trusted node network")
	fs.DurationVar(&o.refresh, "discovery-refresh", 5*time.Minute, "how often every kubelet's /configz is read again (it is also read when its Node restarts or changes version or address)")
	fs.IntVar(&o.workers, "discovery-workers", 4, "kubelets read concurrently")
}

func (o *discoveryOptions) validate() error {
	switch {
	case o.kubeletCAFile != "" && o.kubeletInsecureTLS:
		return usageError("--kubelet-ca-file and --kubelet-insecure-tls contradict each other: give one")
	case o.refresh <= 0:
		return usageError("--discovery-refresh must be positive")
	case o.workers < 1:
		return usageError("--discovery-workers must be at least 1")
	}
	return nil
}

// newDiscoverer builds the Discoverer the config asks for, or nil when it has no
// discovery section. Results go to publisher.
func (o *discoveryOptions) newDiscoverer(d *scheduling.Discovery, restConfig *rest.Config, publisher discovery.Publisher, metrics *discovery.Metrics, log logrus.FieldLogger) (*discovery.Discoverer, error) {
	if d == nil {
		return nil, nil
	}
	client, err := kubernetes.NewForConfig(restConfig)
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
		Metrics:   metrics,
		Logger:    log,
	}
	if cfg.Source == "" {
		cfg.Source = discovery.SourceConfigz
	}
	if cfg.Source == discovery.SourceConfigz {
		prober, err := discovery.NewConfigzProber(discovery.ProberConfig{Rest: restConfig, CAFile: o.kubeletCAFile, Insecure: o.kubeletInsecureTLS})
		if err != nil {
			return nil, err
		}
		cfg.Prober = prober
	}
	return discovery.New(cfg)
}

// poolsOutput is one pool of `pools -o yaml|json`: a stable interface other tools read.
type poolsOutput struct {
	Name                 string              `json:"name"`
	NodeSelector         map[string]string   `json:"nodeSelector"`
	Nodes                int                 `json:"nodes"`
	Taints               []corev1.Taint      `json:"taints,omitempty"`
	KubeletVersion       string              `json:"kubeletVersion,omitempty"`
	KernelVersion        string              `json:"kernelVersion,omitempty"`
	AllowedUnsafeSysctls []string            `json:"allowedUnsafeSysctls"`
	Source               discovery.Source    `json:"source"`
	Used                 bool                `json:"used"`
	Problems             []discovery.Problem `json:"problems,omitempty"`
}

func runPools(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pools", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	configFile := fs.String("config", "", "PlacementConfig file, as given to serve (default: no static pools, discovery by --pool-label)")
	poolLabel := fs.String("pool-label", "", "node label grouping nodes into pools, overriding the config's discovery.poolLabel (default: the config's, else the first of "+strings.Join(discovery.WellKnownPoolLabels, ", ")+" found on a node)")
	allowlistFrom := fs.String("allowlist-from", "", "configz or annotation, overriding the config's discovery.allowlistFrom (default configz)")
	output := fs.String("o", "table", "output: table, yaml or json")
	timeout := fs.Duration("timeout", time.Minute, "how long discovery may take")
	var do discoveryOptions
	do.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: sysctl-placement pools [--kubeconfig FILE] [--config FILE] [--pool-label LABEL] [-o table|yaml|json]")
		fmt.Fprintln(stderr, "Prints the pools the webhook would place pods on: discovered from the live Nodes and merged with the config's static pools.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return exitError{code: 1}
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q", fs.Arg(0))
	}
	if *output != "table" && *output != "yaml" && *output != "json" {
		return usageError("-o %q is not supported: use table, yaml or json", *output)
	}
	if err := do.validate(); err != nil {
		return err
	}

	static, err := poolsStaticConfig(*configFile)
	if err != nil {
		return exitError{code: 1, err: err}
	}
	loading := clientcmd.NewDefaultClientConfigLoadingRules()
	loading.ExplicitPath = *kubeconfig
	restConfig, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(loading, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return exitError{code: 1, err: fmt.Errorf("could not load the kubeconfig (set --kubeconfig): %w", err)}
	}
	restConfig.UserAgent = "sysctl-placement-pools/" + Version
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	disc := static.Config().Discovery
	if *poolLabel != "" || *allowlistFrom != "" || disc == nil {
		d := scheduling.Discovery{AllowlistFrom: scheduling.AllowlistFromConfigz}
		if disc != nil {
			d = *disc
		}
		if *poolLabel != "" {
			d.PoolLabel = *poolLabel
		}
		if *allowlistFrom != "" {
			d.AllowlistFrom = *allowlistFrom
		}
		disc = &d
	}
	if disc.AllowlistFrom != scheduling.AllowlistFromConfigz && disc.AllowlistFrom != scheduling.AllowlistFromAnnotation {
		return usageError("--allowlist-from %q is not supported: use configz or annotation", disc.AllowlistFrom)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return exitError{code: 1, err: fmt.Errorf("could not build a Kubernetes client: %w", err)}
	}
	if disc.PoolLabel == "" {
		if disc.PoolLabel, err = detectPoolLabel(ctx, client); err != nil {
			return exitError{code: 1, err: err}
		}
	}

	log := logrus.New()
	log.Out = stderr
	log.Level = logrus.ErrorLevel // problems are in the output; do not print them twice
	combiner, err := discovery.NewCombiner(discovery.CombinerConfig{Sink: config.NewStore(nil), Logger: log})
	if err != nil {
		return exitError{code: 1, err: err}
	}
	combiner.Set(static)
	d, err := do.newDiscoverer(disc, restConfig, combiner, nil, log)
	if err != nil {
		return exitError{code: 1, err: err}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	waitErr := d.WaitForFirstPass(ctx)
	stop()
	<-done
	if waitErr != nil {
		return exitError{code: 1, err: fmt.Errorf("%w (could the nodes be listed? check the kubeconfig and RBAC: list/watch nodes)", waitErr)}
	}
	return printPools(stdout, combiner.Report(), *output)
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

func printPools(w io.Writer, report []discovery.PoolStatus, format string) error {
	out := make([]poolsOutput, 0, len(report))
	for i := range report {
		p := report[i]
		out = append(out, poolsOutput{
			Name: p.Pool.Name, NodeSelector: p.Pool.NodeSelector, Nodes: p.Nodes, Taints: p.Pool.Taints,
			KubeletVersion: p.Pool.KubeletVersion, KernelVersion: p.Pool.KernelVersion,
			AllowedUnsafeSysctls: append([]string{}, p.Pool.AllowedUnsafeSysctls...),
			Source:               p.Source, Used: p.Usable(), Problems: p.Problems,
		})
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	case "yaml":
		data, err := yaml.Marshal(out)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSELECTOR\tNODES\tTAINTS\tKUBELET\tKERNEL\tALLOWED UNSAFE SYSCTLS\tSOURCE\tPROBLEMS")
	for _, p := range out {
		name := p.Name
		if !p.Used {
			name += " (unused)"
		}
		var taints []string
		for _, t := range p.Taints {
			taints = append(taints, t.ToString())
		}
		kinds := map[string]bool{}
		for _, pr := range p.Problems {
			kinds[string(pr.Kind)] = true
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", name, labels.FormatLabels(p.NodeSelector), p.Nodes,
			orNone(strings.Join(taints, ",")), orNone(p.KubeletVersion), orNone(p.KernelVersion),
			orNone(strings.Join(p.AllowedUnsafeSysctls, ",")), p.Source, orNone(strings.Join(slices.Sorted(maps.Keys(kinds)), ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	first := true
	for _, p := range out {
		for _, pr := range p.Problems {
			if first {
				fmt.Fprintln(w, "\nProblems:")
				first = false
			}
			fmt.Fprintf(w, "  %s: %s: %s\n", p.Name, pr.Kind, pr.Detail)
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
