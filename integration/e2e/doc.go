// Package e2e holds the end-to-end tests of sysctl-placement: user flows run on a
// real control plane (package cluster) whose simulated node pools admit pods with
// the kubelet's own sysctl checks. Build the control plane first with
// `go tool task control-plane`; `go tool task integration` does both.
package e2e
