package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCommand runs the CLI in-process and returns its exit status and output.
func runCommand(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPlanPrintsTheExamplePodPlacedOnTheIPCPool(t *testing.T) {
	code, out, errOut := runCommand(t, "", "plan", "-o", "yaml", "-f", "../../deploy/examples/postgres-pod.yaml")
	if code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errOut)
	}
	for _, want := range []string{"sysctl-placement.io/pool: ipc", "value: ipc", "sysctl-placement.io/placement"} {
		if !strings.Contains(out, want) {
			t.Errorf("the placed pod lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "placed on pool ipc") {
		t.Errorf("the summary on stderr does not say where the pod went: %s", errOut)
	}
}

func TestPlanJSON(t *testing.T) {
	t.Run("plan JSON gives one result per document with a patch that keeps unknown fields", func(t *testing.T) {
		manifest := `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
  "spec": {"futureField": {"x": 1}, "securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
           "containers": [{"name": "c", "image": "i"}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: b}
spec:
  containers: [{name: c, image: i}]
`
		code, out, errOut := runCommand(t, manifest, "plan", "-o", "json", "-f", "-")
		if code != 0 {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("want one JSON line per document, got %d:\n%s", len(lines), out)
		}
		var first, second planResult
		if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
			t.Fatal(err)
		}
		if !first.Allowed || len(first.Patch) == 0 || !strings.Contains(string(first.Object), `"futureField":{"x":1}`) {
			t.Errorf("first document: want allowed, a patch and the unknown field kept; got %s", lines[0])
		}
		if !strings.Contains(string(first.Object), `"sysctl-placement.io/pool":"net"`) {
			t.Errorf("first document was not placed on the net pool: %s", first.Object)
		}
		if !second.Allowed || len(second.Patch) != 0 || second.Warnings == nil {
			t.Errorf("a pod without sysctls must be allowed with an empty patch and warnings list, got %s", lines[1])
		}
	})
}

func TestPlanExitsTwoWhenADocumentIsDenied(t *testing.T) {
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: mixed}
spec:
  securityContext:
    sysctls: [{name: kernel.msgmax, value: "1"}, {name: net.core.somaxconn, value: "1"}]
  containers: [{name: c, image: i}]
`
	code, _, errOut := runCommand(t, manifest, "plan", "-f", "-")
	if code != 2 {
		t.Fatalf("exit %d, want 2 for a denied document; stderr: %s", code, errOut)
	}
	if !strings.Contains(errOut, "kernel.msgmax") || !strings.Contains(errOut, "denied") {
		t.Errorf("the denial must be explained on stderr: %s", errOut)
	}
}

func TestPlanHonoursTheNamespaceAnnotations(t *testing.T) {
	code, out, errOut := runCommand(t, "", "plan", "--namespace-annotation", "sysctl-placement.io/enabled=false", "-o", "json",
		"-f", "../../deploy/examples/postgres-pod.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var res planResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Patch) != 0 {
		t.Errorf("a namespace that has not opted in gets no change, got patch %s", res.Patch)
	}
}

func TestPlanRejectsBadUsageAndBadInputWithExitOne(t *testing.T) {
	badConfig := writeFile(t, "config.yaml", `apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
pools:
  - name: a
    nodeSelector: {pool: a}
    allowedUnsafeSysctls: ["kernel.panic"]
    surprise: true
`)
	cases := map[string]struct {
		args     []string
		stdin    string
		mentions string
	}{
		"no manifest":              {[]string{"plan"}, "", "-f"},
		"an unknown output format": {[]string{"plan", "-o", "xml", "-f", "-"}, "", "yaml or json"},
		"a missing file":           {[]string{"plan", "-f", "/nonexistent/pod.yaml"}, "", "could not read"},
		"input that is not YAML":   {[]string{"plan", "-f", "-"}, "{not: [yaml", "could not read"},
		"an object without kind":   {[]string{"plan", "-f", "-"}, "metadata: {name: x}\n", "apiVersion or kind"},
		"an invalid config":        {[]string{"plan", "--config", badConfig, "-f", "-"}, "", "surprise"},
		"a bad annotation flag":    {[]string{"plan", "--namespace-annotation", "novalue", "-f", "-"}, "", "KEY=VALUE"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := runCommand(t, tc.stdin, tc.args...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", code, errOut)
			}
			if !strings.Contains(errOut, tc.mentions) {
				t.Errorf("stderr %q does not mention %q", errOut, tc.mentions)
			}
			if strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "panic") {
				t.Errorf("stderr shows a crash: %s", errOut)
			}
		})
	}
}

func TestPlanPodSecurity(t *testing.T) {
	t.Run("plan reports what the pod security level of the namespace forbids", func(t *testing.T) {
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
				"-o", "yaml", "-f", "../../deploy/examples/postgres-pod.yaml")
			if code != 0 || !strings.Contains(out, "sysctl-placement.io/pool: ipc") || strings.Contains(errOut, "Pod Security") {
				t.Fatalf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
			}
		})
	})
}
