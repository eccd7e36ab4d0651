package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sysctl-placement/sysctl-placement/cmd/sysctl-placement/internal/output"
)

// Build identity. `go tool task build` and `go tool task image` set these with
// -ldflags "-X main.Version=… -X main.Revision=… -X main.BuildDate=…"; a binary
// installed with `go install …/cmd/sysctl-placement@vX` has none of them and reads
// what the go command recorded instead (see currentBuild).
var (
	// Version is the release (a tag such as v0.2.0, or git describe's answer).
	Version = "dev"
	// Revision is the full commit the binary was built from.
	Revision = ""
	// BuildDate is the commit's time in RFC 3339 (not the clock's: builds are
	// reproducible).
	BuildDate = ""
)

// buildInfo is what `version` prints and what serve logs and exports.
type buildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

// currentBuild is this binary's identity: the -ldflags values, completed from the
// module build information the go command recorded.
func currentBuild() buildInfo {
	info, _ := debug.ReadBuildInfo()
	return resolveBuild(buildInfo{Version: Version, Revision: Revision, BuildDate: BuildDate, GoVersion: runtime.Version()}, info)
}

// resolveBuild fills what -ldflags did not set from info (nil when the binary has
// none): the module version for `go install …@vX`, vcs.revision and vcs.time for a
// build in a git checkout with -buildvcs on.
func resolveBuild(b buildInfo, info *debug.BuildInfo) buildInfo {
	if info != nil {
		if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Revision == "":
				b.Revision = s.Value
			case s.Key == "vcs.time" && b.BuildDate == "":
				b.BuildDate = s.Value
			}
		}
	}
	return b.withUnknowns()
}

func (b buildInfo) withUnknowns() buildInfo {
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	if b.BuildDate == "" {
		b.BuildDate = "unknown"
	}
	return b
}

// String is the `version` command's output.
func (b buildInfo) String() string {
	return fmt.Sprintf("sysctl-placement %s\n  commit: %s\n  built:  %s\n  go:     %s\n", b.Version, b.Revision, b.BuildDate, b.GoVersion)
}

// newBuildInfoGauge is sysctl_placement_build_info{version,revision,goversion} 1, the
// usual way to join a build's identity to any other series.
func newBuildInfoGauge(b buildInfo) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "sysctl_placement_build_info",
		Help:        "Always 1; its labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	}, func() float64 { return 1 })
}

// newVersionCommand is `version [-o text|json|yaml]`: json and yaml are buildInfo's
// fields, for scripts that check which build a cluster's tooling runs.
func newVersionCommand(s streams) *cobra.Command {
	format := "text"
	cmd := &cobra.Command{
		Use:   "version [-o text|json|yaml]",
		Short: "Print the version, commit, build date and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			switch format {
			case "text":
				_, err := fmt.Fprint(s.out, currentBuild())
				return err
			case "json", "yaml":
				return output.WriteData(s.out, format, currentBuild())
			}
			return usageError("-o %q is not supported: use text, json or yaml", format)
		},
	}
	cmd.Flags().StringVarP(&format, "output", "o", format, "output: text, json or yaml")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json", "yaml"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
