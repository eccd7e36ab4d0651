package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

func TestKlogThroughLogrus(t *testing.T) {
	defer klog.ClearLogger()
	var out bytes.Buffer
	g := &globalOptions{logFormat: "json", logLevel: "debug"}
	if err := g.setUpLogging(&out); err != nil {
		t.Fatal(err)
	}
	klog.InfoS("watch ended", "resource", "nodes")
	klog.V(2).InfoS("throttled", "wait", "1s")
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two JSON lines, got:\n%s", out.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("klog wrote something that is not our JSON: %q", lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatalf("klog wrote something that is not our JSON: %q", lines[1])
	}
	if first["msg"] != "watch ended" || first["resource"] != "nodes" || first["level"] != "info" {
		t.Errorf("klog.InfoS became %v", first)
	}
	if second["level"] != "debug" {
		t.Errorf("klog V(2) should be debug, got %v", second)
	}
}

func TestLogFlags(t *testing.T) {
	for _, tc := range []struct{ args []string }{
		{[]string{"--log-format", "xml", "version"}},
		{[]string{"--log-level", "loud", "version"}},
	} {
		code, _, errOut := runCommand(t, "", tc.args...)
		if code != 1 || !strings.Contains(errOut, "is not supported") {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errOut)
		}
	}
	if lvl, err := logrus.ParseLevel("warn"); err != nil || lvl != logrus.WarnLevel {
		t.Fatal("logrus level names changed")
	}
}

// writeKubeconfig writes a kubeconfig with one cluster, user and context.
func writeKubeconfig(t *testing.T, name, server string, current bool, user string) string {
	t.Helper()
	cur := ""
	if current {
		cur = "current-context: " + name + "\n"
	}
	return writeFile(t, name+".kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: `+name+`, cluster: {server: "`+server+`"}}]
users: [{name: `+name+`, user: `+user+`}]
contexts: [{name: `+name+`, context: {cluster: `+name+`, user: `+name+`}}]
`+cur)
}

func TestKubeconfigLoading(t *testing.T) {
	a := writeKubeconfig(t, "a", "https://a.example:6443", true, "{token: a}")
	b := writeKubeconfig(t, "b", "https://b.example:6443", false,
		`{exec: {apiVersion: client.authentication.k8s.io/v1, command: get-token, interactiveMode: Never}}`)
	t.Setenv("KUBECONFIG", a+string(os.PathListSeparator)+b)
	t.Setenv("HOME", t.TempDir())

	t.Run("$KUBECONFIG with several files is merged and its current-context used", func(t *testing.T) {
		cfg, err := (&globalOptions{}).restConfig(false, "test")
		if err != nil || cfg.Host != "https://a.example:6443" || cfg.BearerToken != "a" {
			t.Fatalf("got %+v, %v", cfg, err)
		}
	})
	t.Run("--context picks a context of any of the files, with its exec credential plugin", func(t *testing.T) {
		cfg, err := (&globalOptions{overrides: clientcmd.ConfigOverrides{CurrentContext: "b"}}).restConfig(false, "test")
		if err != nil || cfg.Host != "https://b.example:6443" || cfg.ExecProvider == nil || cfg.ExecProvider.Command != "get-token" {
			t.Fatalf("got %+v, %v", cfg, err)
		}
	})
	t.Run("--kubeconfig wins over $KUBECONFIG", func(t *testing.T) {
		cfg, err := (&globalOptions{kubeconfig: b}).restConfig(false, "test")
		if err == nil {
			t.Fatalf("b has no current-context: want an error, got %+v", cfg)
		}
		cfg, err = (&globalOptions{kubeconfig: b, overrides: clientcmd.ConfigOverrides{CurrentContext: "b"}}).restConfig(false, "test")
		if err != nil || cfg.Host != "https://b.example:6443" {
			t.Fatalf("got %+v, %v", cfg, err)
		}
	})
	t.Run("serve outside a pod falls back to the kubeconfig", func(t *testing.T) {
		t.Setenv("KUBERNETES_SERVICE_HOST", "")
		cfg, err := (&globalOptions{}).restConfig(true, "test")
		if err != nil || cfg.Host != "https://a.example:6443" {
			t.Fatalf("got %+v, %v", cfg, err)
		}
	})
	t.Run("an unknown context is a clear error", func(t *testing.T) {
		code, _, errOut := runCommand(t, "", "pools", "--context", "nope")
		if code != 1 || !strings.Contains(errOut, `context "nope"`) {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestKubectlPluginHelp(t *testing.T) {
	var out bytes.Buffer
	root := newRootCommand(streams{out: &out, errOut: &out}, pluginName)
	root.SetArgs([]string{"audit", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubectl sysctl-placement audit") {
		t.Errorf("help does not show the plugin's command line:\n%s", out.String())
	}
}

func TestKubectlPluginCompletion(t *testing.T) {
	var out bytes.Buffer
	root := newRootCommand(streams{out: &out, errOut: &out}, "kubectl_complete-sysctl_placement")
	root.SetArgs(completionArgs("kubectl_complete-sysctl_placement", []string{"au"}))
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "audit\t") {
		t.Errorf("completing \"au\" gave %q, want audit", out.String())
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errOut := runCommand(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, "sysctl-placement") {
			t.Errorf("completion %s: exit %d, stderr %s", shell, code, errOut)
		}
	}
	code, out, _ := runCommand(t, "", "__complete", "audit", "-o", "")
	if code != 0 || !strings.Contains(out, "table\njson\nyaml") {
		t.Errorf("-o completes to its values, got %q", out)
	}
}

func TestVersionFlag(t *testing.T) {
	_, cmdOut, _ := runCommand(t, "", "version")
	code, flagOut, _ := runCommand(t, "", "--version")
	if code != 0 || flagOut != cmdOut || !strings.HasPrefix(flagOut, "sysctl-placement ") {
		t.Errorf("--version: exit %d, %q; version: %q", code, flagOut, cmdOut)
	}
}
