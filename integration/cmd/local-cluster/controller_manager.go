//go:build !no_kube_controller_manager

package main

import (
	_ "time/tzdata" // for CronJob Time Zone support

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// kube-controller-manager as k8s.io/kubernetes/cmd/kube-controller-manager runs it.
func init() {
	commands["kube-controller-manager"] = func([]string) int { return cli.Run(app.NewControllerManagerCommand()) }
}
