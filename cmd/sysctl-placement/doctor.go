package main

// `doctor` checks an installation end to end: a pod asking for an unsafe sysctl,
// created with dryRun=All in a scratch namespace that opts in, must come back placed;
// otherwise it names the cause (package internal/doctor). The chart's `helm test`
// runs it; with kustomize, run it yourself after the install.

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/doctor"
	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

func newDoctorCommand(g *globalOptions, s streams) *cobra.Command {
	o := doctor.Options{}
	var sysctlFlag string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check an installation: a dry-run pod asking for an unsafe sysctl must be placed",
		Long: `Checks that the webhook places pods: reads both webhook configurations, creates a scratch
namespace labelled to opt in, creates in it with dryRun=All (nothing is stored or runs) a
pod asking for --sysctl, and reports where the webhook placed it. When it is not placed,
it names the cause: the configurations are missing, the caBundle is missing or does not
match the serving certificate, the API server cannot reach the webhook (pods not Ready,
a NetworkPolicy, a firewall), Pod Security, or the webhook's own refusal (no pool allows
the sysctl). The scratch namespace is deleted afterwards.

Needs: get on both configurations, create on pods, and create and delete on namespaces
unless --test-namespace names one that opts in (the chart's helm test does).
Exit status 0 when the pod is placed, 2 when a check fails, 1 on a usage error.`,
		Args: flagsOnly,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, value, ok := parseSysctlFlag(sysctlFlag)
			if !ok {
				return usageError("--sysctl %q is not name=value with a sysctl name (e.g. kernel.msgmax=65536)", sysctlFlag)
			}
			o.Sysctl = corev1.Sysctl{Name: name, Value: value}
			client, err := g.client(true, "sysctl-placement-doctor/"+Version)
			if err != nil {
				return err
			}
			err = doctor.Run(cmd.Context(), client, o, s.out)
			if f := (*doctor.Failure)(nil); errors.As(err, &f) {
				return exitError{code: 2, err: err}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&sysctlFlag, "sysctl", "kernel.msgmax=65536", "the unsafe sysctl the test pod asks for, name=value: one a pool of yours allows")
	cmd.Flags().StringVar(&o.MutatingWebhook, "mutating-webhook", "sysctl-placement", "the MutatingWebhookConfiguration to check")
	cmd.Flags().StringVar(&o.ValidatingWebhook, "validating-webhook", "sysctl-placement", "the ValidatingWebhookConfiguration to check")
	cmd.Flags().StringVar(&o.TestNamespace, "test-namespace", "", "an existing namespace that opts in, to test in instead of a scratch one (then only create on pods there is needed)")
	cmd.Flags().BoolVar(&o.KeepNamespace, "keep-namespace", false, "leave the scratch namespace for a look afterwards")
	return cmd
}

// parseSysctlFlag splits name=value and checks the name as a pool's pattern is
// checked, without a trailing *.
func parseSysctlFlag(s string) (name, value string, ok bool) {
	name, value, ok = strings.Cut(s, "=")
	return name, value, ok && value != "" && !strings.HasSuffix(name, "*") && scheduling.ValidateSysctlPattern(name) == nil
}
