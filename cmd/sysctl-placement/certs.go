package main

// `certs` bootstraps the webhook's TLS: a CA in a Secret of its own, a serving
// certificate for the webhook's Service in a kubernetes.io/tls Secret, and the CA in the
// caBundle of every webhook entry of both webhook configurations. It is idempotent, so
// the same command serves as the first install, the periodic renewal
// (deploy/overlays/self-signed runs it from a Job and a CronJob) and a repair: whatever
// is still good is left alone.
//
// The CA's key never goes into the Secret the webhook mounts: a compromised replica, or
// the node it runs on (a kubelet reads every Secret its pods mount, whole), must not
// yield a CA that caBundle trusts for years. Only this command, as its own
// ServiceAccount, reads the CA Secret.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	caCommonName = "sysctl-placement-ca"

	// certManagerCertificateAnnotation marks a Secret that cert-manager writes.
	certManagerCertificateAnnotation = "cert-manager.io/certificate-name"
)

// certsOptions are the flags of `certs`.
type certsOptions struct {
	namespace         string
	service           string
	secret            string
	caSecret          string
	mutatingWebhook   string
	validatingWebhook string
	validity          time.Duration
	caValidity        time.Duration
	renewBefore       time.Duration
	writeDir          string
	hosts             []string

	// Parsed from hosts by validate.
	extraDNS []string
	extraIPs []net.IP
}

func (o *certsOptions) validate() error {
	switch {
	case o.validity <= 0:
		return usageError("--validity must be positive, such as 8760h")
	case o.renewBefore < 0 || o.renewBefore >= o.validity:
		return usageError("--renew-before (%s) must be at least 0 and shorter than --validity (%s), or every run would renew", o.renewBefore, o.validity)
	case o.caValidity <= o.validity:
		return usageError("--ca-validity (%s) must be longer than --validity (%s): a serving certificate cannot outlive its CA", o.caValidity, o.validity)
	}
	if msgs := validation.IsDNS1035Label(o.service); len(msgs) > 0 {
		return usageError("--service %q is not a Service name: %s", o.service, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(o.namespace); len(msgs) > 0 {
		return usageError("--namespace %q is not a namespace name: %s", o.namespace, strings.Join(msgs, "; "))
	}
	o.extraDNS, o.extraIPs = nil, nil
	for _, h := range o.hosts {
		if ip := net.ParseIP(h); ip != nil {
			o.extraIPs = append(o.extraIPs, ip)
			continue
		}
		if msgs := validation.IsDNS1123Subdomain(h); len(msgs) > 0 {
			return usageError("--host %q is neither an IP address nor a DNS name: %s", h, strings.Join(msgs, "; "))
		}
		o.extraDNS = append(o.extraDNS, h)
	}
	if o.writeDir != "" {
		return nil
	}
	if msgs := validation.IsDNS1123Subdomain(o.secret); len(msgs) > 0 {
		return usageError("--secret %q is not a Secret name: %s", o.secret, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Subdomain(o.caSecret); len(msgs) > 0 {
		return usageError("--ca-secret %q is not a Secret name: %s", o.caSecret, strings.Join(msgs, "; "))
	}
	if o.caSecret == o.secret {
		return usageError("--ca-secret and --secret are both %q: the CA's key must not be in the Secret the webhook mounts", o.secret)
	}
	return nil
}

func newCertsCommand(g *globalOptions, s streams) *cobra.Command {
	o := &certsOptions{}
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Create or renew the TLS Secret and set the webhooks' caBundle",
		Long: `Creates or renews the webhook's CA (in its own Secret) and serving certificate (in the
Secret the webhook mounts) and sets the caBundle of both webhook configurations; changes
nothing that is still good.`,
		Args: flagsOnly,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runCerts(cmd.Context(), g, o, s.out)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func runCerts(ctx context.Context, g *globalOptions, o *certsOptions, stdout io.Writer) error {
	if o.writeDir != "" {
		return o.ensureDir(stdout)
	}
	restConfig, err := g.restConfig(false, "sysctl-placement-certs/"+Version)
	if err != nil {
		return fmt.Errorf("%w (or use --write-dir for local files)", err)
	}
	client, err := newKubeClient(restConfig)
	if err != nil {
		return fmt.Errorf("could not build a Kubernetes client: %w", err)
	}
	return o.ensureCluster(ctx, client, stdout)
}

func (o *certsOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.namespace, "namespace", "sysctl-placement", "namespace of the webhook's Service and of the TLS Secret")
	fs.StringVar(&o.service, "service", "sysctl-placement", "the webhook's Service; the serving certificate names its in-cluster DNS names")
	fs.StringVar(&o.secret, "secret", "sysctl-placement-tls", "kubernetes.io/tls Secret the webhook mounts: tls.crt, tls.key and ca.crt")
	fs.StringVar(&o.caSecret, "ca-secret", "sysctl-placement-ca", "Secret that keeps the CA (ca.crt, ca.key) so renewals keep caBundle; nothing mounts it")
	fs.StringVar(&o.mutatingWebhook, "mutating-webhook", "sysctl-placement", "MutatingWebhookConfiguration whose webhooks get the caBundle (empty: none)")
	fs.StringVar(&o.validatingWebhook, "validating-webhook", "sysctl-placement", "ValidatingWebhookConfiguration whose webhooks get the caBundle (empty: none)")
	fs.DurationVar(&o.validity, "validity", 8760*time.Hour, "lifetime of a new serving certificate")
	fs.DurationVar(&o.caValidity, "ca-validity", 87600*time.Hour, "lifetime of a new CA; it signs many serving certificates, so caBundle rarely changes")
	fs.DurationVar(&o.renewBefore, "renew-before", 720*time.Hour, "replace a certificate (serving or CA) that expires within this time")
	fs.StringVar(&o.writeDir, "write-dir", "", "instead of a cluster, keep ca.crt, ca.key, tls.crt and tls.key in this directory (for local runs)")
	fs.StringArrayVar(&o.hosts, "host", nil, "extra DNS name or IP address for the serving certificate, such as 127.0.0.1 (repeatable)")
}

// parseCertsFlags reads and checks the flags of `certs`.
func parseCertsFlags(args []string, stderr io.Writer) (*certsOptions, error) {
	o := &certsOptions{}
	fs := pflag.NewFlagSet("certs", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, usageError("%w", err)
	}
	if fs.NArg() > 0 {
		return nil, usageError("unexpected argument %q: certs takes flags only", fs.Arg(0))
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}
