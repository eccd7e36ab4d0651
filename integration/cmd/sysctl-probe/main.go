// Command sysctl-probe is the program of the real node's test image: it prints the
// value of each sysctl named in its arguments as the kernel shows it inside the
// container (/proc/sys, in the pod's IPC, UTS and network namespaces), one
// "name=value" line each, and then waits until it is stopped, so its pod stays Running
// and its log holds the values. With no arguments it only waits, which makes it the
// real node's pause (sandbox) image as well.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	status := 0
	for _, name := range os.Args[1:] {
		value, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/")))
		if err != nil {
			fmt.Fprintf(os.Stderr, "sysctl-probe: %v\n", err)
			status = 1
			continue
		}
		// kernel.sem separates its fields with tabs; print them as a pod spec writes them.
		fmt.Printf("%s=%s\n", name, strings.Join(strings.Fields(string(value)), " "))
	}
	if status != 0 {
		os.Exit(status)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
