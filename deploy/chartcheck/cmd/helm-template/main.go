// Command helm-template prints the chart rendered as `helm template` would, with
// Helm's Go packages, so integration tests and users without a helm binary can apply
// it: helm-template [-n NAMESPACE] [--release NAME] [-f values.yaml]... [--set k=v]...
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/strvals"

	"github.com/sysctl-placement/sysctl-placement/deploy/chartcheck"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	rel := chartcheck.DefaultRelease
	var files, sets list
	flag.StringVar(&rel.Namespace, "n", rel.Namespace, "release namespace")
	flag.StringVar(&rel.Name, "release", rel.Name, "release name")
	flag.Var(&files, "f", "values file (repeatable; later files win)")
	flag.Var(&sets, "set", "key=value, as helm --set (repeatable)")
	flag.Parse()
	values := map[string]any{}
	for _, f := range files {
		v, err := common.ReadValuesFile(f)
		if err != nil {
			fail(err)
		}
		values = chartutil.CoalesceTables(v.AsMap(), values)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, values); err != nil {
			fail(fmt.Errorf("--set %s: %w", s, err))
		}
	}
	out, err := chartcheck.Template(rel, values)
	if err != nil {
		fail(err)
	}
	fmt.Print(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "helm-template:", err)
	os.Exit(1)
}
