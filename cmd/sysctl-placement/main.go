// Command sysctl-placement is the admission webhook that places pods asking for
// sysctls on node pools whose kubelets allow them, and its tools.
//
//	sysctl-placement serve   the HTTPS mutating and validating webhook
//	sysctl-placement plan    what the webhook would do to a manifest, offline
//	sysctl-placement audit   what the webhook would change in a live cluster, read-only
//	sysctl-placement pools   the pools a live cluster has, as the webhook sees them
//	sysctl-placement certs   the webhook's TLS Secret and caBundle
//	sysctl-placement uninstall-webhooks   deletes both webhook configurations (pre-delete)
//	sysctl-placement uninstall-cleanup    deletes the Secrets and Leases it made (post-delete)
//	sysctl-placement doctor  checks an installation with a dry-run pod (helm test)
//
// Installed as kubectl-sysctl_placement on the PATH, it is the kubectl plugin
// `kubectl sysctl-placement`. This package only wires: flags, validation, signals. The
// decision lives in package scheduling, the admission adapter in package webhook.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit status with its message.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e exitError) Unwrap() error { return e.err }

// usageError is a command-line mistake: exit status 1 and a hint.
func usageError(format string, args ...any) error {
	return exitError{code: 1, err: fmt.Errorf(format, args...)}
}

// streams are the standard streams a command reads and writes, so tests run the CLI
// in-process.
type streams struct {
	in          io.Reader
	out, errOut io.Writer
}

// flagsOnly refuses positional arguments, for commands that take flags only.
func flagsOnly(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError("unexpected argument %q: %s takes flags only", args[0], cmd.Name())
	}
	return nil
}

// pluginName is how kubectl finds the binary as a plugin: `kubectl sysctl-placement`
// runs kubectl-sysctl_placement (kubectl maps "-" in a command to "_" in the file name).
const pluginName = "kubectl-sysctl_placement"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	binary := filepath.Base(os.Args[0])
	root := newRootCommand(streams{in: stdin, out: stdout, errOut: stderr}, binary)
	root.SetArgs(completionArgs(binary, args))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if msg := ee.Error(); msg != "" {
			_, _ = fmt.Fprintln(stderr, "sysctl-placement:", msg) // the exit code says it if stderr cannot
		}
		return ee.code
	}
	// Flag and argument errors from cobra: say which command's help to read.
	// The exit code says it if stderr cannot.
	_, _ = fmt.Fprintln(stderr, "sysctl-placement:", err)
	if sub, _, ferr := root.Find(args); ferr == nil && sub != nil {
		_, _ = fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", sub.CommandPath())
	}
	return 1
}

// completionArgs turns a run as kubectl's completion helper into cobra's completion
// request: kubectl completes `kubectl sysctl-placement …` by running
// kubectl_complete-sysctl_placement with the words typed so far, so the binary linked
// under that name answers as `__complete`.
func completionArgs(binary string, args []string) []string {
	if strings.HasPrefix(binary, "kubectl_complete-") {
		return append([]string{cobra.ShellCompRequestCmd}, args...)
	}
	return args
}

// newRootCommand builds the command tree. binary is the name the program was run as:
// as kubectl-sysctl_placement, help and completion say `kubectl sysctl-placement`.
func newRootCommand(s streams, binary string) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "sysctl-placement",
		Short: "Places pods that ask for sysctls on node pools whose kubelets allow them",
		Long: `sysctl-placement places pods that ask for sysctls on node pools whose kubelets allow them.

Before installing: "pools --config FILE" shows how your config's pools match the
cluster's nodes, "plan -f FILE" what the webhook would do to a manifest, and "audit"
what it would change in the live cluster (read-only).`,
		SilenceErrors: true,
		SilenceUsage:  true,
		// Flag errors go through run, which names the command's help.
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return g.setUpLogging(s.errOut)
		},
	}
	if strings.HasPrefix(binary, "kubectl-") || strings.HasPrefix(binary, "kubectl_complete-") {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl sysctl-placement"}
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.errOut)
	g.addFlags(root.PersistentFlags())
	root.AddCommand(
		newServeCommand(g, s),
		newPlanCommand(g, s),
		newAuditCommand(g, s),
		newPoolsCommand(g, s),
		newCertsCommand(g, s),
		newUninstallWebhooksCommand(g, s),
		newUninstallCleanupCommand(g, s),
		newDoctorCommand(g, s),
		newVersionCommand(s),
		newPolicyCommand(g, s),
	)
	root.Version = currentBuild().String()
	root.SetVersionTemplate("{{.Version}}")
	// Declared here so cobra adds no -v shorthand: kubectl users read -v as verbosity.
	root.Flags().Bool("version", false, "print the version, as the version command does")
	return root
}
