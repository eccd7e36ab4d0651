package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	apidiscovery "k8s.io/client-go/discovery"
	"sigs.k8s.io/yaml"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
)

// newPolicyCommand is `policy`, the webhook-free backend's tools.
func newPolicyCommand(g *globalOptions, s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "The webhook-free backend: the pools as admission policies the API server runs",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyRenderCommand(g, s))
	return cmd
}

func newPolicyRenderCommand(g *globalOptions, s streams) *cobra.Command {
	var o poolsFlags
	var discover bool
	var opts policy.Options
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "render [--config FILE] [--discover]",
		Short: "Print the MutatingAdmissionPolicy, ValidatingAdmissionPolicies and bindings for kubectl apply",
		Long: `Compiles the pools into a MutatingAdmissionPolicy and two ValidatingAdmissionPolicies
(admissionregistration.k8s.io/v1, Kubernetes 1.36 or newer) with their bindings, and
prints them as YAML for kubectl apply or GitOps: the API server then places pods
itself, with nothing running. The pools are the config's (default: the embedded
example); with --discover, the live cluster's, loaded as "pools" loads them, and the
API server's version is checked. docs/design.md ("Policy backend") lists what the
policies do not do that the webhook does.

Render refuses, saying why, when the policies would cost the API server more per pod
than the webhook's two calls; use serve then.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			compiled, err := o.renderPools(ctx, cmd, g, discover)
			if err != nil {
				return err
			}
			started := time.Now()
			objs, err := policy.Render(compiled, opts)
			if err != nil {
				return exitError{code: 1, err: fmt.Errorf("could not render the policies: %w", err)}
			}
			g.logger.WithField("took", time.Since(started).Round(time.Microsecond)).Info("rendered: " + objs.Cost.String())
			_, _ = fmt.Fprintf(s.out, "# sysctl-placement policy render %s: needs Kubernetes 1.36+ (admissionregistration.k8s.io/v1)\n# estimated cost: %s\n", Version, objs.Cost)
			for _, obj := range objs.List() {
				data, err := yaml.Marshal(obj)
				if err != nil {
					return err
				}
				_, _ = fmt.Fprintf(s.out, "---\n%s", data)
			}
			return nil
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&discover, "discover", false, "render the live cluster's pools (kubeconfig as for every command), as the pools command shows them; checks the API server's version")
	cmd.Flags().BoolVar(&opts.AllowSlowerThanWebhook, "allow-slower-than-webhook", false, "render even where the policies would cost the API server more per pod than the webhook (never past half its per-call CEL limit)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long discovery may take")
	return cmd
}

// renderPools is the config's pools, or with discover the cluster's as `pools` loads
// them, after checking the API server can run the policies.
func (o *poolsFlags) renderPools(ctx context.Context, cmd *cobra.Command, g *globalOptions, discover bool) (*scheduling.Compiled, error) {
	if !discover {
		compiled, err := loadConfig(o.configFile)
		if err != nil {
			return nil, exitError{code: 1, err: err}
		}
		return compiled, nil
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	restConfig, err := g.restConfig(false, "sysctl-placement-policy/"+Version)
	if err != nil {
		return nil, exitError{code: 1, err: err}
	}
	if !levelChanged(cmd) {
		g.logger.Level = logrus.ErrorLevel
	}
	pools, _, err := o.load(ctx, restConfig, g.logger)
	if err != nil {
		return nil, err
	}
	versions, err := apidiscovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		return nil, exitError{code: 1, err: err}
	}
	v, err := versions.ServerVersion()
	if err != nil {
		return nil, exitError{code: 1, err: fmt.Errorf("could not read the API server's version: %w", err)}
	}
	if err := policy.CheckServerVersion(v.GitVersion); err != nil {
		return nil, exitError{code: 1, err: err}
	}
	return pools.Store().Current(), nil
}
