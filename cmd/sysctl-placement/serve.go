package main

import (
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/sysctl-placement/sysctl-placement/scheduling/policy"
	"github.com/sysctl-placement/sysctl-placement/webhook"
	"github.com/sysctl-placement/sysctl-placement/webhook/discovery"
)

// serveOptions are the flags of `serve`.
type serveOptions struct {
	configFile    string
	certFile      string
	keyFile       string
	clientCAFile  string
	listen        string
	metricsListen string
	development   bool
	profiling     bool
	// metricsSecure serves the metrics address over HTTPS and lets only callers the
	// API server authenticates and authorizes read /metrics and pprof.
	metricsSecure bool
	shutdownGrace time.Duration
	// shutdownDelay is the drain phase after SIGTERM: /readyz answers 503 and every
	// admission response asks the client to reconnect, while the listener stays open,
	// so that load balancers (Service endpoints) move new connections to other replicas
	// before this one stops accepting.
	shutdownDelay time.Duration
	resync        time.Duration
	// kubeAPIQPS and kubeAPIBurst rate-limit serve's own API calls (client-go's
	// defaults, 5 and 10, would hold the audit Events, one per placed pod, to 5 a
	// second: a scale-up of 500 pods would be audited over 100 seconds).
	kubeAPIQPS   float32
	kubeAPIBurst int
	// events configures the audit Events (see auditevents.go).
	events auditEventsOptions
	// discovery says how to reach kubelets when the config has a discovery section.
	discovery discoveryOptions
	// metricsAudience is the audience --metrics-secure asks TokenReviews to check.
	metricsAudience string
	// maxConcurrentAdmissions bounds the admission reviews in progress (see
	// webhook.AdmissionLimit).
	maxConcurrentAdmissions int
	// admission is the backend: admissionWebhook, or admissionPolicy, where the elected
	// replica also keeps the admission policies in sync (see policysync.go).
	admission string
	// policy tunes the rendering in policy mode.
	policy policy.Options
}

// The values of --admission.
const (
	admissionWebhook = "webhook"
	admissionPolicy  = "policy"
)

func (o *serveOptions) validate() error {
	switch {
	case o.configFile == "":
		return usageError("--config is required: the PlacementConfig file (see deploy/examples/placement-config.yaml)")
	case o.certFile == "" || o.keyFile == "":
		return usageError("--tls-cert-file and --tls-private-key-file are required: the API server only calls webhooks over HTTPS")
	case o.listen == "" || o.metricsListen == "":
		return usageError("--listen and --metrics-listen must not be empty")
	case o.admission != admissionWebhook && o.admission != admissionPolicy:
		return usageError("--admission %q is not supported: use webhook or policy", o.admission)
	case o.maxConcurrentAdmissions < 1:
		return usageError("--max-concurrent-admissions must be at least 1")
	case o.shutdownGrace <= 0:
		return usageError("--shutdown-grace must be positive")
	case o.shutdownDelay < 0:
		return usageError("--shutdown-delay must not be negative")
	case !(o.kubeAPIQPS > 0) || o.kubeAPIBurst < 1: // !(> 0) refuses NaN too
		return usageError("--kube-api-qps and --kube-api-burst must be positive")
	}
	return o.discovery.validate()
}

func newServeCommand(g *globalOptions, s streams) *cobra.Command {
	o := serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve --config FILE --tls-cert-file FILE --tls-private-key-file FILE",
		Short: "Run the mutating and validating admission webhook",
		Long: `Serves /mutate and /validate over HTTPS, and /healthz, /readyz and /metrics on the
plain metrics port. In a pod it uses the pod's service account; elsewhere the kubeconfig
as kubectl loads it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if err := o.events.validate(); err != nil {
				return err
			}
			logger := g.logger
			if o.development {
				// --development is shorthand for text logs at debug level, unless the
				// log flags say otherwise.
				if !cmd.Flags().Changed("log-format") {
					logger.Formatter = &logrus.TextFormatter{FullTimestamp: true}
				}
				if !levelChanged(cmd) {
					logger.Level = logrus.DebugLevel
				}
			}
			restConfig, err := g.restConfig(true, "sysctl-placement/"+Version)
			if err != nil {
				return err
			}
			restConfig.QPS, restConfig.Burst = o.kubeAPIQPS, o.kubeAPIBurst
			return serve(cmd.Context(), o, restConfig, logger.WithField("version", currentBuild().Version))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.configFile, "config", "", "PlacementConfig file; reloaded when it changes (required)")
	fs.StringVar(&o.certFile, "tls-cert-file", "", "PEM serving certificate; reloaded when it changes (required)")
	fs.StringVar(&o.keyFile, "tls-private-key-file", "", "PEM private key of --tls-cert-file (required)")
	fs.StringVar(&o.clientCAFile, "client-ca-file", "", "if set, require a client certificate signed by this CA (the API server's, see docs)")
	fs.StringVar(&o.listen, "listen", ":8443", "HTTPS address of /mutate and /validate")
	fs.StringVar(&o.metricsListen, "metrics-listen", ":8080", "address of /healthz, /readyz and /metrics (plain HTTP unless --metrics-secure)")
	fs.BoolVar(&o.development, "development", false, "human-readable text logs at debug level (shorthand for --log-format text --log-level debug)")
	fs.BoolVar(&o.profiling, "profiling", false, "serve pprof under /debug/pprof/ on the metrics address")
	fs.BoolVar(&o.metricsSecure, "metrics-secure", false, "serve --metrics-listen over HTTPS with the serving certificate; /metrics and pprof need a bearer token that the API server authenticates (TokenReview) and authorizes for the path (SubjectAccessReview, RBAC nonResourceURLs); /healthz and /readyz stay open")
	fs.StringVar(&o.metricsAudience, "metrics-audience", "", "with --metrics-secure, accept only bearer tokens issued for this audience (TokenReview spec.audiences), e.g. a projected token for \"sysctl-placement\", so a token sent to serve is useless against the API server; empty: the API server's own audiences")
	fs.IntVar(&o.maxConcurrentAdmissions, "max-concurrent-admissions", webhook.DefaultMaxConcurrentAdmissions, "most admission reviews decoded and answered at once; more wait up to 1s, then are answered 429 with Retry-After, which the API server retries (sized so the largest reviews fit the shipped 256Mi memory limit)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 20*time.Second, "how long in-flight requests may take after SIGTERM")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 5*time.Second, "after SIGTERM, how long /readyz answers 503 and connections are closed after each response before the listener closes (lets Service endpoints drop this replica)")
	fs.DurationVar(&o.resync, "resync", 10*time.Minute, "informer resync period")
	fs.Float32Var(&o.kubeAPIQPS, "kube-api-qps", 50, "most requests per second to the API server (the admission path makes none; mostly the audit Events, one per placed pod)")
	fs.IntVar(&o.kubeAPIBurst, "kube-api-burst", 100, "requests to the API server allowed at once above --kube-api-qps")
	fs.StringVar(&o.admission, "admission", admissionWebhook, "webhook: the API server calls /mutate and /validate (the webhook configurations); policy: also keep the admission policies `policy render` prints in sync with the config and the discovered pools (Kubernetes 1.36+, the elected replica, RBAC of deploy/components/policy-backend), so the API server places pods itself; /mutate and /validate keep serving for when the policies are refused (docs/operations.md, \"Policy backend\")")
	fs.BoolVar(&o.policy.AllowSlowerThanWebhook, "allow-slower-than-webhook", false, "with --admission=policy, keep the policies in force even where they cost the API server more per pod than the webhook (as policy render's flag)")
	o.events.addFlags(fs)
	o.discovery.addFlags(fs, discovery.DefaultServiceAccount)
	return cmd
}
