// Package e2e holds the end-to-end tests of sysctl-placement: user flows run on a
// real control plane (package cluster) whose node pools are real kubelets (hollow
// kubelets: the kubelet over a fake container runtime), which admit or reject pods
// with their own sysctl allowlists. Build the control plane first with
// `go tool task control-plane`; `go tool task integration` does both.
package e2e
