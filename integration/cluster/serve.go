package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sysctl-placement/sysctl-placement/integration/process"
)

// ServeFlags is the command line of `sysctl-placement serve` as the tests, the demo
// and perf run it. Args is the one place that turns it into flags.
type ServeFlags struct {
	// Config is the PlacementConfig file.
	Config string
	// CertDir holds tls.crt and tls.key (written by WriteCerts).
	CertDir string
	// Listen is the HTTPS address of /mutate and /validate; MetricsListen the plain
	// HTTP address of /healthz, /readyz and /metrics. StartServe picks free loopback
	// ports for the empty ones.
	Listen, MetricsListen string
	// Kubeconfig is what serve uses to reach the API server.
	Kubeconfig string
	// Development asks for text logs instead of JSON.
	Development bool
	// Extra flags come last, so they override the ones above.
	Extra []string
}

// Args is serve's command line, "serve" first.
func (f ServeFlags) Args() []string {
	args := []string{"serve",
		"--config", f.Config,
		"--tls-cert-file", filepath.Join(f.CertDir, "tls.crt"),
		"--tls-private-key-file", filepath.Join(f.CertDir, "tls.key"),
		"--listen", f.Listen,
		"--metrics-listen", f.MetricsListen,
		"--kubeconfig", f.Kubeconfig,
	}
	if f.Development {
		args = append(args, "--development")
	}
	return append(args, f.Extra...)
}

// ServeOptions start one `sysctl-placement serve` process with StartServe.
type ServeOptions struct {
	// Bin is the sysctl-placement executable. Default: SysctlPlacement.Path().
	Bin string
	// Name tells replicas apart; the log is <LogDir>/<Name>.log, one run's only.
	Name   string
	LogDir string
	// Flags is the command line; Config, CertDir and Kubeconfig are required.
	Flags ServeFlags
	// Env is added to the process environment.
	Env []string
	// ReadyTimeout bounds the wait for /readyz. Default: 30 seconds.
	ReadyTimeout time.Duration
}

// StartServe starts `sysctl-placement serve` and waits until /readyz answers 200. It
// is the one way the tests, the demo and perf start serve; Cluster.StartWebhook fills
// the options from a cluster.
func StartServe(ctx context.Context, o ServeOptions) (*Webhook, error) {
	if o.Flags.Config == "" || o.Flags.CertDir == "" || o.Flags.Kubeconfig == "" || o.Name == "" || o.LogDir == "" {
		return nil, fmt.Errorf("StartServe needs Name, LogDir and the flags Config, CertDir and Kubeconfig; got %+v", o)
	}
	if o.Bin == "" {
		bin, err := SysctlPlacement.Path()
		if err != nil {
			return nil, err
		}
		o.Bin = bin
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	for _, addr := range []*string{&o.Flags.Listen, &o.Flags.MetricsListen} {
		if *addr != "" {
			continue
		}
		free, err := process.FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		*addr = free
	}
	// A mounted Secret volume holds no CA; then CABundle stays empty.
	caBundle, err := os.ReadFile(filepath.Join(o.Flags.CertDir, "ca.crt"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	w := &Webhook{
		URL:        "https://" + o.Flags.Listen,
		MetricsURL: "http://" + o.Flags.MetricsListen,
		CABundle:   caBundle,
		CertDir:    o.Flags.CertDir,
		LogFile:    filepath.Join(o.LogDir, o.Name+".log"),
	}
	w.proc = &process.Process{Name: "sysctl-placement serve (" + o.Name + ")", Path: o.Bin, Args: o.Flags.Args(),
		Env: o.Env, LogPath: w.LogFile, TruncateLog: true}
	started := time.Now()
	if err := w.proc.Start(); err != nil {
		return nil, err
	}
	if _, err := w.proc.WaitReady(ctx, o.ReadyTimeout, process.HTTPReady(http.DefaultClient, w.MetricsURL+"/readyz")); err != nil {
		_ = w.Kill()
		return nil, err
	}
	w.Ready = time.Since(started)
	return w, nil
}

// WriteCerts runs `sysctl-placement certs --write-dir dir` for hosts: a CA and a
// serving certificate, as the chart's certs Job makes them. It keeps an existing valid
// pair, so replicas sharing dir share one CA like Pods sharing a Secret.
func WriteCerts(ctx context.Context, bin, dir string, hosts ...string) error {
	args := []string{"certs", "--write-dir", dir}
	for _, h := range hosts {
		args = append(args, "--host", h)
	}
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("sysctl-placement certs --write-dir: %w\n%s", err, out)
	}
	return nil
}

// WebhookOptions configure a `sysctl-placement serve` process of a cluster.
type WebhookOptions struct {
	// ConfigFile is the PlacementConfig. Default: deploy/examples/placement-config.yaml,
	// whose pools are the DefaultPools.
	ConfigFile string
	// Kubeconfig is what serve uses to reach the API server. Default: the admin's,
	// or the shipped ServiceAccount's with AsServiceAccount.
	Kubeconfig string
	// AsServiceAccount runs serve as the shipped ServiceAccount bound to exactly the
	// shipped RBAC (ApplyShippedIdentity), as in a real installation, instead of as an
	// administrator. Ignored when Kubeconfig is set.
	AsServiceAccount bool
	// Name tells replicas apart in logs and file names. Default "webhook".
	Name string
	// ExtraRBAC are RBAC manifests of components (paths from the repository root, e.g.
	// deploy/components/policy-backend/rbac.yaml) applied with the shipped identity,
	// for the flags ExtraArgs turns on. Only with AsServiceAccount.
	ExtraRBAC []string
	// ExtraArgs are appended to the serve command line.
	ExtraArgs []string
	// Env is added to the process environment.
	Env []string
}

// Webhook is a running `sysctl-placement serve` process on loopback.
type Webhook struct {
	// URL is the HTTPS base URL of /mutate and /validate.
	URL string
	// MetricsURL is the plain HTTP base URL of /healthz, /readyz and /metrics.
	MetricsURL string
	// CABundle verifies the serving certificate: ca.crt of CertDir, empty when it
	// has none.
	CABundle []byte
	// CertDir holds ca.crt, tls.crt and tls.key (written by `sysctl-placement certs`).
	CertDir string
	// LogFile is where the process writes its log.
	LogFile string
	// Ready is how long serve took from start to answering /readyz.
	Ready time.Duration

	proc *process.Process
}

// StartWebhook starts the real serve command with certificates from
// `sysctl-placement certs --write-dir`, and waits until /readyz answers 200.
func (c *Cluster) StartWebhook(ctx context.Context, opts WebhookOptions) (*Webhook, error) {
	bin, err := SysctlPlacement.Path()
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "webhook"
	}
	if opts.ConfigFile == "" {
		opts.ConfigFile = filepath.Join(RepoRoot(), "deploy", "examples", "placement-config.yaml")
	}
	if opts.Kubeconfig == "" && opts.AsServiceAccount {
		id, err := c.ApplyShippedIdentity(ctx)
		if err != nil {
			return nil, err
		}
		for _, path := range opts.ExtraRBAC {
			if err := c.applyRBACFile(ctx, filepath.Join(RepoRoot(), path), id); err != nil {
				return nil, err
			}
		}
		opts.Kubeconfig = id.Kubeconfig
	}
	if opts.Kubeconfig == "" {
		opts.Kubeconfig = c.Kubeconfig
	}
	// The same directory for every replica, so they share one CA.
	certDir := filepath.Join(c.WorkDir, "webhook-certs")
	if err := WriteCerts(ctx, bin, certDir, "127.0.0.1", "localhost"); err != nil {
		return nil, err
	}
	return StartServe(ctx, ServeOptions{
		Bin: bin, Name: opts.Name, LogDir: c.WorkDir, Env: opts.Env,
		Flags: ServeFlags{
			Config: opts.ConfigFile, CertDir: certDir, Kubeconfig: opts.Kubeconfig,
			Development: true, Extra: opts.ExtraArgs,
		},
	})
}

// Get fetches a path from the metrics port.
func (w *Webhook) Get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.MetricsURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// HTTPSClient trusts the webhook's CA.
func (w *Webhook) HTTPSClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(w.CABundle)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// Process is the serve process, for perf's sampling and stopping.
func (w *Webhook) Process() *process.Process { return w.proc }

// PID is the process id of the serve process, to read its /proc/<pid>/status.
func (w *Webhook) PID() int { return w.proc.Pid() }

// Exited is closed when the process has exited.
func (w *Webhook) Exited() <-chan struct{} { return w.proc.Done() }

// ExitErr is the process's exit error once Exited is closed (nil for status 0).
func (w *Webhook) ExitErr() error {
	_, err := w.proc.Exited()
	return err
}

// Terminate sends SIGTERM, as the kubelet does, and waits for the exit; after timeout
// it kills the process and says so.
func (w *Webhook) Terminate(timeout time.Duration) error { return w.proc.Stop(timeout) }

// Kill sends SIGKILL and waits for the exit.
func (w *Webhook) Kill() error { return w.proc.Kill() }
