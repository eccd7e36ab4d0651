//go:build !no_kube_scheduler

package main

import (
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register" // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version" // for version metric registration
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// kube-scheduler as k8s.io/kubernetes/cmd/kube-scheduler runs it.
func init() {
	commands["kube-scheduler"] = func([]string) int { return cli.Run(app.NewSchedulerCommand()) }
}
