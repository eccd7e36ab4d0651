package main

import (
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestPolicyRender(t *testing.T) {
	t.Run("policy render prints the policies and bindings for kubectl apply", func(t *testing.T) {
		code, stdout, stderr := runCommand(t, "", "policy", "render")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var kinds []string
		for _, doc := range strings.Split(stdout, "\n---\n")[1:] {
			var obj struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatal(err)
			}
			if obj.APIVersion != "admissionregistration.k8s.io/v1" {
				t.Errorf("%s has apiVersion %q, want admissionregistration.k8s.io/v1", obj.Kind, obj.APIVersion)
			}
			kinds = append(kinds, obj.Kind)
		}
		want := "MutatingAdmissionPolicy MutatingAdmissionPolicyBinding ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding"
		if got := strings.Join(kinds, " "); got != want {
			t.Errorf("render printed %s, want %s (each binding after its policy)", got, want)
		}
	})

	t.Run("policy render refuses pools that would be slower than the webhook", func(t *testing.T) {
		var cfg strings.Builder
		cfg.WriteString("apiVersion: sysctl-placement.io/v1alpha1\nkind: PlacementConfig\npools:\n")
		for i := range 12 {
			fmt.Fprintf(&cfg, "  - {name: p%[1]d, nodeSelector: {pool: p%[1]d}, allowedUnsafeSysctls: [\"kernel.shm*\", \"net.core.somaxconn\"]}\n", i)
		}
		path := writeFile(t, "pools.yaml", cfg.String())
		code, stdout, stderr := runCommand(t, "", "policy", "render", "--config", path)
		if code != 1 || !strings.Contains(stderr, "use the webhook (serve)") || stdout != "" {
			t.Errorf("exit %d, stdout %d bytes, stderr %q; want 1, nothing printed, a refusal saying to use the webhook", code, len(stdout), stderr)
		}
		if code, _, stderr := runCommand(t, "", "policy", "render", "--config", path, "--allow-slower-than-webhook"); code != 0 {
			t.Errorf("with --allow-slower-than-webhook: exit %d, %s", code, stderr)
		}
	})
}

func TestPolicyRenderRefusesAConfigThatDoesNotLoad(t *testing.T) {
	code, _, stderr := runCommand(t, "", "policy", "render", "--config", "does-not-exist.yaml")
	if code != 1 || !strings.Contains(stderr, "does-not-exist.yaml") {
		t.Errorf("exit %d, stderr %q; want 1 naming the file", code, stderr)
	}
}
