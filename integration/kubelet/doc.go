// Package kubelet checks what sysctl-placement knows of the kubelet against the
// kubelet's own code, linked from k8s.io/kubernetes at the release the tests run.
package kubelet
