package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// podSpecWith is a pod spec asking for kernel.shmmax, indented for a template.
const templateSpec = `
    metadata: {labels: {app: db}}
    spec:
      securityContext:
        sysctls: [{name: kernel.shmmax, value: "1"}]
      containers: [{name: c, image: i}]`

// TestPlanPods: plan shows where the pods of a workload will go, as the webhook will
// place them when the workload's controller creates them.
func TestPlanPods(t *testing.T) {
	t.Run("every workload kind's pods are shown placed on the pool that allows their sysctls", func(t *testing.T) {
		workloads := map[string]string{
			"Deployment":            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n  template:" + templateSpec,
			"StatefulSet":           "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n  template:" + templateSpec,
			"DaemonSet":             "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n  template:" + templateSpec,
			"ReplicaSet":            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: db}\nspec:\n  selector: {matchLabels: {app: db}}\n  template:" + templateSpec,
			"Job":                   "apiVersion: batch/v1\nkind: Job\nmetadata: {name: db}\nspec:\n  template:" + templateSpec,
			"CronJob":               "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: db}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n   spec:\n    template:" + strings.ReplaceAll(templateSpec, "\n    ", "\n      "),
			"PodTemplate":           "apiVersion: v1\nkind: PodTemplate\nmetadata: {name: db}\ntemplate:" + strings.ReplaceAll(templateSpec, "\n    ", "\n  "),
			"ReplicationController": "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: db}\nspec:\n  selector: {app: db}\n  template:" + templateSpec,
		}
		for kind, manifest := range workloads {
			t.Run("a "+kind+"'s pods are placed on the pool that allows their sysctls", func(t *testing.T) {
				code, out, errOut := runCommand(t, manifest, "plan", "-f", "-")
				if code != 0 {
					t.Fatalf("exit %d, stderr: %s", code, errOut)
				}
				for _, want := range []string{kind + "/db", "kernel.shmmax", "pods placed", "ipc", "nodeSelector sysctl-placement.io/pool=ipc", "tolerations dedicated=ipc:NoSchedule"} {
					if !strings.Contains(out, want) {
						t.Errorf("the table lacks %q:\n%s", want, out)
					}
				}

				code, out, errOut = runCommand(t, manifest, "plan", "-o", "json", "-f", "-")
				if code != 0 {
					t.Fatalf("-o json: exit %d, stderr: %s", code, errOut)
				}
				var res planResult
				if err := json.Unmarshal([]byte(out), &res); err != nil {
					t.Fatal(err)
				}
				if res.Pod == nil || !res.Pod.Allowed || !strings.Contains(string(res.Pod.Object), `"nodeSelector":{"sysctl-placement.io/pool":"ipc"}`) {
					t.Errorf("-o json lacks the pod plan placing the pod on ipc: %s", out)
				}
				if len(res.Patch) != 0 {
					t.Errorf("a template without clashes gets no patch, got %s", res.Patch)
				}
			})
		}
	})
	t.Run("a workload whose pods would be denied is explained per pool", func(t *testing.T) {
		manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: mixed}
spec:
  selector: {matchLabels: {app: m}}
  template:
    metadata: {labels: {app: m}}
    spec:
      securityContext:
        sysctls: [{name: kernel.msgmax, value: "1"}, {name: net.core.somaxconn, value: "1"}]
      containers: [{name: c, image: i}]
`
		code, out, errOut := runCommand(t, manifest, "plan", "-f", "-")
		if code != 0 {
			t.Fatalf("exit %d: the Deployment itself is admitted; stderr: %s", code, errOut)
		}
		if !strings.Contains(out, "Deployment/mixed") || !strings.Contains(out, "denied") {
			t.Errorf("the table does not say the pods would be denied:\n%s", out)
		}
		if !strings.Contains(errOut, "its pods") || !strings.Contains(errOut, "pool ipc: does not allow net.core.somaxconn") {
			t.Errorf("stderr does not explain per pool why the pods would be denied: %s", errOut)
		}
	})
	t.Run("the template's clash fix is shown beside where the pods go", func(t *testing.T) {
		code, out, errOut := runCommand(t, "", "plan", "-f", "../../deploy/examples/shm-hostipc-deployment.yaml")
		if code != 0 {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
		if !strings.Contains(out, "template (set hostIPC: false)") || !strings.Contains(out, "pods placed") {
			t.Errorf("the table must show both the template's hostIPC fix and where the pods go:\n%s", out)
		}
	})
	t.Run("-o yaml keeps the objects on stdout and says where the pods go on stderr", func(t *testing.T) {
		code, out, errOut := runCommand(t, "", "plan", "-o", "yaml", "-f", "../../deploy/examples/postgres-deployment.yaml")
		if code != 0 {
			t.Fatalf("exit %d, stderr: %s", code, errOut)
		}
		if !strings.HasPrefix(out, "apiVersion: apps/v1") || strings.Contains(out, "kind: Pod\n") {
			t.Errorf("stdout must hold only the resulting Deployment:\n%s", out)
		}
		if !strings.Contains(errOut, "Deployment/postgres): pods placed on ipc") {
			t.Errorf("stderr does not say where the pods go: %s", errOut)
		}
	})
	t.Run("a kind the webhook does not handle is admitted unchanged", func(t *testing.T) {
		code, out, errOut := runCommand(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "plan", "-f", "-")
		if code != 0 || !strings.Contains(out, "ConfigMap/c") || !strings.Contains(out, "not handled: admitted unchanged") {
			t.Errorf("exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
		}
	})
}
