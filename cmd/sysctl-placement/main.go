// Command sysctl-placement is the admission webhook that places pods asking for
// sysctls on node pools whose kubelets allow them, and its offline tools.
//
//	sysctl-placement serve   the HTTPS mutating and validating webhook
//	sysctl-placement plan    what the webhook would do to a manifest, offline
//	sysctl-placement pools   the pools a live cluster has, as the webhook sees them
//
// This package only wires: flags, validation, signals. The decision lives in
// package scheduling, the admission adapter in package webhook.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// exitError carries a process exit status with its message.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// usageError is a command-line mistake: exit status 1 and a hint.
func usageError(format string, args ...any) error {
	return exitError{code: 1, err: fmt.Errorf(format, args...)}
}

const usage = `sysctl-placement places pods that ask for sysctls on node pools whose kubelets allow them.

Usage:
  sysctl-placement serve [flags]     run the mutating and validating admission webhook
  sysctl-placement plan [flags] -f FILE|-
                                     show offline what the webhook would do to manifests
  sysctl-placement pools [--kubeconfig FILE] [--config FILE] [-o table|yaml|json]
                                     show the pools of a live cluster as the webhook sees them
  sysctl-placement certs [flags]     create or renew the TLS Secret and set the webhooks' caBundle
  sysctl-placement version           print the version

Run "sysctl-placement <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stderr)
	case "plan":
		err = runPlan(args[1:], stdin, stdout, stderr)
	case "pools":
		err = runPools(ctx, args[1:], stdout, stderr)
	case "certs":
		err = runCerts(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprint(stdout, currentBuild())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 1
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "sysctl-placement:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "sysctl-placement:", err)
	return 1
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return fmt.Sprint(*s) }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
