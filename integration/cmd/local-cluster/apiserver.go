//go:build !no_kube_apiserver

package main

import (
	_ "time/tzdata" // for timeZone support in CronJob

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// kube-apiserver as k8s.io/kubernetes/cmd/kube-apiserver runs it.
func init() {
	commands["kube-apiserver"] = func([]string) int { return cli.Run(app.NewAPIServerCommand()) }
}
