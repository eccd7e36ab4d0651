package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeBinary writes an executable that prints out, as `kube-apiserver --version` or
// `kubectl version --client -o json` would.
func fakeBinary(t *testing.T, dir, name, out string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\nprintf '%s\\n' '"+out+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReuse(t *testing.T) {
	t.Run("binaries of the pinned version are reused instead of built", func(t *testing.T) {
		versions := map[string]string{kubernetes: "v1.37.2", etcdModule: "v3.7.3"}
		assets, path, bin := t.TempDir(), t.TempDir(), t.TempDir()
		fakeBinary(t, assets, "etcd", "etcd Version: 3.7.3")
		fakeBinary(t, assets, "kube-apiserver", "Kubernetes v1.37.2")
		fakeBinary(t, assets, "kube-scheduler", "Kubernetes v1.36.0") // another version: built
		fakeBinary(t, path, "kubectl", `{"clientVersion":{"gitVersion":"v1.36.4"}}`)
		leftOver := fakeBinary(t, bin, "kube-controller-manager", "Kubernetes v1.37.2")
		t.Setenv("KUBEBUILDER_ASSETS", assets)
		t.Setenv("PATH", path)

		got := findReusable(bin, versions)
		want := map[string]string{
			"etcd":                    filepath.Join(assets, "etcd"),
			"kube-apiserver":          filepath.Join(assets, "kube-apiserver"),
			"kube-controller-manager": leftOver,
			"kubectl":                 filepath.Join(path, "kubectl"),
		}
		if len(got) != len(want) {
			t.Errorf("reused %v, want %v", got, want)
		}
		for name, p := range want {
			if got[name] != p {
				t.Errorf("%s: reused %q, want %q", name, got[name], p)
			}
		}
	})
	t.Run("a kubectl on PATH is used only within one minor version", func(t *testing.T) {
		for v, want := range map[string]bool{
			"v1.37.0": true, "v1.36.4": true, "v1.38.1": true,
			"v1.35.9": false, "v1.39.0": false, "v2.37.2": false, "": false, "v1.37.2-dirty": true,
		} {
			if got := withinOneMinor(v, "v1.37.2"); got != want {
				t.Errorf("kubectl %q against v1.37.2: usable %v, want %v", v, got, want)
			}
		}
	})
}

// A cold build shows how far it is: packages done of about how many, and the time
// left at the rate so far.
func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		name            string
		elapsed         time.Duration
		compiled, total int
		want            string
	}{
		{"a quarter done after 5 minutes leaves about 15", 5 * time.Minute, 750, 3000, "5m0s, 750 of about 3000 packages compiled, about 15m0s left"},
		{"nothing compiled yet has no estimate", 20 * time.Second, 0, 3000, "20s, 0 of about 3000 packages compiled"},
		{"an unknown total counts only", 40 * time.Second, 12, 0, "40s, 12 packages compiled so far"},
		{"more than the estimate counts only", time.Minute, 3010, 3000, "1m0s, 3010 packages compiled so far"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := progress(tc.elapsed, tc.compiled, tc.total); got != tc.want {
				t.Errorf("progress = %q, want %q", got, tc.want)
			}
		})
	}
}
