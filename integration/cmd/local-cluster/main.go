// Command local-cluster is the Kubernetes side of the integration tests and the demo in
// one executable: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, a
// hollow kubelet and the real kubelet (for real nodes), each a subcommand. `go tool task control-plane` builds it once into
// integration/bin and links each command's name to it, so `bin/kube-apiserver` runs
// the API server as a separate process, exactly as its own binary would.
//
// One executable instead of five because most of the time of a cold build goes into
// packages the commands share, and each separate binary costs its own link of more
// than a hundred megabytes; see integration/README.md for the measured times.
//
// The command runs the subcommand named by the name it was started as (the link), or
// by its first argument:
//
//	bin/kube-scheduler --kubeconfig …      # through the link
//	bin/local-cluster kube-scheduler --kubeconfig …
//
// A command that a usable binary already provides (KUBEBUILDER_ASSETS, a kubectl on
// PATH) is left out with a build tag (no_kube_apiserver, no_kubectl, …), so its
// packages are not compiled at all.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// commands maps each subcommand to its main; the files of the subcommands register
// themselves in init, each behind its build tag.
var commands = map[string]func(args []string) int{}

func main() {
	name, args := filepath.Base(os.Args[0]), os.Args[1:]
	if _, ok := commands[name]; !ok && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	run, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "local-cluster: unknown command %q; this build has: %s\n", name, strings.Join(names(), ", "))
		os.Exit(2)
	}
	// The commands read their own name from os.Args[0] (kubectl's usage, cobra's help).
	os.Args = append([]string{name}, args...)
	os.Exit(run(args))
}

func names() []string {
	var n []string
	for name := range commands {
		n = append(n, name)
	}
	slices.Sort(n)
	return n
}
