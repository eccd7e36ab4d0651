package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPlanReportsWhatTheNamespacesPodSecurityLevelForbids(t *testing.T) {
	t.Run("a pod is denied under enforce=baseline with the cause and the fix", func(t *testing.T) {
		code, _, errOut := runCommand(t, "", "plan", "--namespace-label", "pod-security.kubernetes.io/enforce=baseline",
			"-f", "../../deploy/examples/postgres-pod.yaml")
		if code != 2 {
			t.Fatalf("exit %d, want 2 for a denied pod; stderr: %s", code, errOut)
		}
		for _, want := range []string{"warning: sysctl-placement: Pod Security baseline:latest (enforce) forbids kernel.shmmax",
			"namespace default enforces Pod Security baseline:latest: 1 workload with unsafe sysctls can never run there",
			"denied (document 1): forbidden by Pod Security: namespace default enforces baseline:latest", "enforce=privileged"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q:\n%s", want, errOut)
			}
		}
	})
	t.Run("a Deployment is admitted with the warning that its pods will be refused", func(t *testing.T) {
		code, out, errOut := runCommand(t, "", "plan", "--namespace-label", "pod-security.kubernetes.io/enforce=restricted",
			"--namespace-label", "pod-security.kubernetes.io/enforce-version=v1.30", "-o", "json",
			"-f", "../../deploy/examples/postgres-deployment.yaml")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var res planResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || !strings.Contains(strings.Join(res.Warnings, "\n"), "Pod Security restricted:v1.30 (enforce) forbids") {
			t.Errorf("got %+v", res)
		}
	})
	t.Run("the namespace summary counts every workload the enforced level refuses", func(t *testing.T) {
		code, _, errOut := runCommand(t, "", "plan", "--namespace-label", "pod-security.kubernetes.io/enforce=baseline",
			"-f", "../../deploy/examples/postgres-pod.yaml", "-f", "../../deploy/examples/postgres-deployment.yaml",
			"-f", "../../deploy/examples/redis-deployment.yaml")
		if code != 2 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(errOut, "namespace default enforces Pod Security baseline:latest: 3 workloads with unsafe sysctls can never run there") {
			t.Errorf("stderr lacks the namespace summary:\n%s", errOut)
		}
	})
	t.Run("a pod under enforce=privileged is placed", func(t *testing.T) {
		code, out, errOut := runCommand(t, "", "plan", "--namespace-label", "pod-security.kubernetes.io/enforce=privileged",
			"-f", "../../deploy/examples/postgres-pod.yaml")
		if code != 0 || !strings.Contains(out, "sysctl-placement.io/pool: ipc") || strings.Contains(errOut, "Pod Security") {
			t.Fatalf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
		}
	})
}
