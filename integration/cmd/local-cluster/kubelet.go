package main

import (
	"context"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

// kubelet as k8s.io/kubernetes/cmd/kubelet runs it: the real node's kubelet, over a
// real container runtime (cluster.AddRealNode). Its packages are the hollow kubelet's,
// so it costs this binary no package of its own.
func init() {
	commands["kubelet"] = func([]string) int { return cli.Run(app.NewKubeletCommand(context.Background())) }
}
