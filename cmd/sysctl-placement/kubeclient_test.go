package main

import (
	"testing"

	"k8s.io/client-go/rest"
)

// TestKubeClientServesEveryGroupWeCall: the client serve and the commands build has a
// client for each API group they call, all sharing one rate limiter of --kube-api-qps
// and --kube-api-burst, as kubernetes.NewForConfig's groups share theirs.
func TestKubeClientServesEveryGroupWeCall(t *testing.T) {
	client, err := newKubeClient(&rest.Config{Host: "https://api.example:6443", QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]rest.Interface{
		"core/v1":                      client.CoreV1().RESTClient(),
		"coordination.k8s.io/v1":       client.CoordinationV1().RESTClient(),
		"events.k8s.io/v1":             client.EventsV1().RESTClient(),
		"admissionregistration.k8s.io": client.AdmissionregistrationV1().RESTClient(),
		"apps/v1":                      client.AppsV1().RESTClient(),
		"batch/v1":                     client.BatchV1().RESTClient(),
	}
	limiter := client.CoreV1().RESTClient().GetRateLimiter()
	if limiter == nil || limiter.QPS() != 50 {
		t.Fatalf("core/v1 rate limiter %v, want one of 50 QPS", limiter)
	}
	for group, rc := range groups {
		if rc.GetRateLimiter() != limiter {
			t.Errorf("%s has a rate limiter of its own; want the one all groups share", group)
		}
	}
}
