//go:build tools

// Package etcd pins the etcd server that the integration control plane runs. It is
// a module of its own so that etcd's dependency versions never have to agree with
// Kubernetes'.
package etcd

import _ "go.etcd.io/etcd/server/v3"
