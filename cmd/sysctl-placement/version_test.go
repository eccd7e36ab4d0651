package main

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/yaml"
)

func TestVersion(t *testing.T) {
	t.Run("prints the version, commit, build date and Go version stamped by -ldflags", func(t *testing.T) {
		saved := [3]string{Version, Revision, BuildDate}
		t.Cleanup(func() { Version, Revision, BuildDate = saved[0], saved[1], saved[2] })
		Version, Revision, BuildDate = "v0.2.0", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T10:00:00Z"

		var out bytes.Buffer
		if code := run([]string{"version"}, nil, &out, &out); code != 0 {
			t.Fatalf("exit %d: %s", code, out.String())
		}
		for _, want := range []string{"sysctl-placement v0.2.0", "commit: 0123456789abcdef0123456789abcdef01234567", "built:  2026-12-01T10:00:00Z", "go:     go1."} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("version output lacks %q:\n%s", want, out.String())
			}
		}
	})

	t.Run("-o json and -o yaml print the same fields for scripts", func(t *testing.T) {
		saved := [3]string{Version, Revision, BuildDate}
		t.Cleanup(func() { Version, Revision, BuildDate = saved[0], saved[1], saved[2] })
		Version, Revision, BuildDate = "v0.2.0", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T10:00:00Z"
		want := buildInfo{Version: "v0.2.0", Revision: "0123456789abcdef0123456789abcdef01234567", BuildDate: "2026-12-01T10:00:00Z", GoVersion: runtime.Version()}
		for format, decode := range map[string]func([]byte, any) error{"json": json.Unmarshal, "yaml": func(b []byte, v any) error { return yaml.UnmarshalStrict(b, v) }} {
			code, out, errOut := runCommand(t, "", "version", "-o", format)
			if code != 0 {
				t.Fatalf("-o %s: exit %d: %s", format, code, errOut)
			}
			var got buildInfo
			if err := decode([]byte(out), &got); err != nil {
				t.Fatalf("-o %s printed %q: %v", format, out, err)
			}
			if got != want {
				t.Errorf("-o %s: %+v, want %+v", format, got, want)
			}
		}
	})

	t.Run("an unknown -o names the formats there are", func(t *testing.T) {
		code, out, errOut := runCommand(t, "", "version", "-o", "xml")
		if code != 1 || out != "" || !strings.Contains(errOut, `-o "xml" is not supported: use text, json or yaml`) {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("a go install of a tagged module reports the module version and what vcs recorded", func(t *testing.T) {
		info := &debug.BuildInfo{
			Main:     debug.Module{Path: "github.com/sysctl-placement/sysctl-placement", Version: "v0.3.1"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.time", Value: "2026-11-30T00:00:00Z"}},
		}
		got := resolveBuild(buildInfo{Version: "dev", GoVersion: "go1.27.3"}, info)
		want := buildInfo{Version: "v0.3.1", Revision: "abc", BuildDate: "2026-11-30T00:00:00Z", GoVersion: "go1.27.3"}
		if got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})

	t.Run("ldflags win over the build information", func(t *testing.T) {
		info := &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "other"}}}
		got := resolveBuild(buildInfo{Version: "v0.2.0", Revision: "stamped", BuildDate: "d", GoVersion: "g"}, info)
		if got.Version != "v0.2.0" || got.Revision != "stamped" {
			t.Errorf("got %+v, want the stamped values", got)
		}
	})

	t.Run("a development build says so instead of printing empty fields", func(t *testing.T) {
		got := resolveBuild(buildInfo{Version: "dev", GoVersion: "g"}, &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}})
		if got.Version != "dev" || got.Revision != "unknown" || got.BuildDate != "unknown" {
			t.Errorf("got %+v", got)
		}
	})
}

func TestBuildInfoMetric(t *testing.T) {
	t.Run("the build info metric carries the version, revision and Go version", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(newBuildInfoGauge(buildInfo{Version: "v0.2.0", Revision: "abc", GoVersion: "go1.27.3"}))
		want := `
# HELP sysctl_placement_build_info Always 1; its labels say which build is running.
# TYPE sysctl_placement_build_info gauge
sysctl_placement_build_info{goversion="go1.27.3",revision="abc",version="v0.2.0"} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sysctl_placement_build_info"); err != nil {
			t.Error(err)
		}
	})
}
