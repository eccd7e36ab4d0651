package webhook

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

// modulePath is this module's import path.
const modulePath = "github.com/sysctl-placement/sysctl-placement"

// packageRow is a row of the table in docs/design.md, "Packages": a package, what
// lives there and what it may import.
var packageRow = regexp.MustCompile("^\\| `([^`]+)` \\|[^|]*\\| (.*) \\|$")

// The table in docs/design.md is the rule for imports between this module's
// packages: this test holds the code to it and it to the code. It sits here, in the
// package whose layers the rule is mostly about.
func TestPackageMap(t *testing.T) {
	doc, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	// allowed maps a row (a package, or "prefix/..." for a tree) to the packages it
	// may import; "*" is any package outside another cmd/ row.
	allowed := map[string][]string{}
	for _, line := range strings.Split(string(doc), "\n") {
		m := packageRow.FindStringSubmatch(line)
		if m == nil || m[1] == "package" {
			continue
		}
		var may []string
		switch {
		case strings.HasPrefix(m[2], "any package above"):
			may = []string{"*"}
		case m[2] != "—":
			for _, p := range strings.Split(m[2], ", ") {
				may = append(may, strings.Trim(p, "`"))
			}
		}
		allowed[m[1]] = may
	}
	if len(allowed) < 10 {
		t.Fatalf("found %d rows in docs/design.md's package table; is the table still there?", len(allowed))
	}
	rowOf := func(pkg string) string {
		if _, ok := allowed[pkg]; ok {
			return pkg
		}
		for row := range allowed {
			if prefix, ok := strings.CutSuffix(row, "/..."); ok && (pkg == prefix || strings.HasPrefix(pkg, prefix+"/")) {
				return row
			}
		}
		return ""
	}

	used := map[string]bool{}
	for pkg, deps := range modulePackages(t, "..") {
		row := rowOf(pkg)
		if row == "" {
			t.Errorf("package %s has no row in docs/design.md's package table; add one saying what lives there and what it may import", pkg)
			continue
		}
		used[row] = true
		may := allowed[row]
		for _, dep := range deps {
			depRow := rowOf(dep)
			if slices.Contains(may, dep) || slices.Contains(may, "*") && (depRow == row || !strings.HasPrefix(depRow, "cmd/")) {
				continue
			}
			t.Errorf("%s imports %s, which docs/design.md's package table does not allow (it may import %v); move the code or change the rule there", pkg, dep, may)
		}
	}
	for row := range allowed {
		if !used[row] {
			t.Errorf("docs/design.md's package table has a row for %s, which is no package of this module", row)
		}
	}
}

// modulePackages maps each package of the module rooted at root (nested modules left
// out) to the packages of this module its non-test files import, both named relative
// to the module ("webhook/review").
func modulePackages(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if name := d.Name(); rel != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
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
		for _, imp := range pkg.Imports {
			if dep, ok := strings.CutPrefix(imp, modulePath+"/"); ok {
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
