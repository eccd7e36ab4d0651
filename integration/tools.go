//go:build tools

// Package integration pins the Kubernetes components that the control plane is
// built from, so that `go mod tidy` keeps their dependencies in go.mod.
package integration

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
