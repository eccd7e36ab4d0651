package cluster

import (
	"go/build"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// integrationModule is the integration module's import path.
const integrationModule = "github.com/sysctl-placement/sysctl-placement/integration"

// integrationRow is a row of the table in docs/design.md, "The integration module":
// a package in bold, what lives there, and what it may import.
var integrationRow = regexp.MustCompile(`^\| \*\*([^*]+)\*\* \|[^|]*\| (.*) \|$`)

// The table in docs/design.md is the rule for imports between the integration
// module's packages, tests included: this test holds the code to it and it to the
// code. It sits in cluster, the package every other one builds on.
func TestIntegrationPackageMap(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(RepoRoot(), "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string][]string{}
	for line := range strings.SplitSeq(string(doc), "\n") {
		m := integrationRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var may []string
		if m[2] != "—" {
			for p := range strings.SplitSeq(m[2], ", ") {
				may = append(may, strings.Trim(p, "`"))
			}
		}
		allowed[m[1]] = may
	}
	if len(allowed) < 5 {
		t.Fatalf("found %d rows in docs/design.md's integration package table; is the table still there?", len(allowed))
	}
	rowOf := func(pkg string) string {
		if _, ok := allowed[pkg]; ok {
			return pkg
		}
		for row := range allowed {
			if prefix, ok := strings.CutSuffix(row, "/..."); ok && strings.HasPrefix(pkg, prefix+"/") {
				return row
			}
		}
		return ""
	}
	used := map[string]bool{}
	for pkg, deps := range integrationPackages(t, filepath.Join(RepoRoot(), "integration")) {
		row := rowOf(pkg)
		if row == "" {
			t.Errorf("package %s has no row in docs/design.md's integration package table; add one saying what lives there and what it may import", pkg)
			continue
		}
		used[row] = true
		for _, dep := range deps {
			if dep == pkg || slices.Contains(allowed[row], dep) {
				continue
			}
			t.Errorf("%s imports %s, which docs/design.md's integration package table does not allow (it may import %v); move the code or change the rule there", pkg, dep, allowed[row])
		}
	}
	for row := range allowed {
		if !used[row] {
			t.Errorf("docs/design.md's integration package table has a row for %s, which is no package of the integration module", row)
		}
	}
}

// integrationPackages maps each package of the module rooted at root (nested modules
// left out) to the packages of that module its files, tests included, import, both
// named relative to root ("perf/cmd/load").
func integrationPackages(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if name := d.Name(); rel != "." && (name == "testdata" || name == "bin" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
			return filepath.SkipDir
		}
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && rel != "." {
			return filepath.SkipDir // another module
		}
		pkg, err := build.Default.ImportDir(p, 0)
		if err != nil {
			return nil // no Go files here
		}
		var deps []string
		for _, imp := range slices.Concat(pkg.Imports, pkg.TestImports, pkg.XTestImports) {
			if dep, ok := strings.CutPrefix(imp, integrationModule+"/"); ok && !slices.Contains(deps, dep) {
				deps = append(deps, dep)
			}
		}
		out[path.Clean(filepath.ToSlash(rel))] = deps
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
