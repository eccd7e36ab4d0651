package apicalls

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// moduleRoot is the main module's directory, from this package's.
const moduleRoot = "../.."

// clientCall matches a line that asks the API server (or a kubelet) for something:
// a typed client's verb called with a context, an informer, a Lease lock, a
// metadata informer for a resource, a raw REST request, a kubelet's /configz.
var clientCall = regexp.MustCompile(`\.(Get|List|Watch|Create|CreateToken|Update|UpdateStatus|Patch|Apply|Delete|DeleteCollection|Evict)\(ctx\b` +
	`|\bNew\w*Informer\(|\.ForResource\(|resourcelock\.\w+Lock\{|ListWatch|\.(Do|DoRaw|Stream)\(ctx\b|/configz"`)

// sourceLine is one line of the module's code.
type sourceLine struct {
	file string // from the module root
	line int
	text string
}

// moduleCalls returns every line of the main module's non-test Go code that
// clientCall matches. Nested modules (integration, deploy/chartcheck) are other
// binaries with identities of their own and are left out, and so is this package.
func moduleCalls(t *testing.T) []sourceLine {
	t.Helper()
	var out []sourceLine
	err := filepath.WalkDir(moduleRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(moduleRoot, path)
		if d.IsDir() {
			if rel == "." {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || rel == filepath.Join("deploy", "apicalls") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }() // read only: nothing is lost
		s := bufio.NewScanner(f)
		s.Buffer(nil, 1<<20)
		for n := 1; s.Scan(); n++ {
			text := s.Text()
			if trimmed := strings.TrimSpace(text); strings.HasPrefix(trimmed, "//") {
				continue
			}
			if clientCall.MatchString(text) {
				out = append(out, sourceLine{file: filepath.ToSlash(rel), line: n, text: strings.TrimSpace(text)})
			}
		}
		return s.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("found no client call in the module; is moduleRoot right?")
	}
	return out
}

// A call the code makes without a row would be a grant the manifests lack (or grant
// without saying why); a row whose call the code no longer makes would be a grant no
// code path uses.
func TestTheTableAndTheCodeMakeTheSameCalls(t *testing.T) {
	calls := moduleCalls(t)
	makes := func(l sourceLine, c Call) bool { return c.Source == l.file && strings.Contains(l.text, c.Call) }
	t.Run("every client call in the code is in the table", func(t *testing.T) {
		for _, l := range calls {
			if !slices.ContainsFunc(Table, func(c Call) bool { return makes(l, c) }) {
				t.Errorf("%s:%d calls the API without a row in deploy/apicalls (add one per grant it needs, and the grant to the identity's RBAC):\n  %s", l.file, l.line, l.text)
			}
		}
	})
	t.Run("every row's call is still in the code", func(t *testing.T) {
		for _, c := range Table {
			if !slices.ContainsFunc(calls, func(l sourceLine) bool { return makes(l, c) }) {
				t.Errorf("%s: no line of %s makes the call %q any more; drop the row and its grant (or point it at the code that makes the call now)", c.Grant(), c.Source, c.Call)
			}
		}
	})
}

func TestEveryRowIsComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Table {
		if c.Identity == "" || c.Verb == "" || c.Resource == "" || c.Source == "" || c.Call == "" {
			t.Errorf("%+v: identity, verb, resource, source and call are required", c)
		}
		// A create of a subresource (serviceaccounts/token) names its object in the
		// URL, so RBAC can restrict it by name; a plain create cannot be.
		if c.Verb == "create" && c.Name != "" && c.Subresource == "" {
			t.Errorf("%s: RBAC cannot restrict create by name (the name is not known when it is checked)", c.Grant())
		}
		key := string(c.Identity) + " " + c.Grant() + " " + c.Source + " " + c.Call
		if seen[key] {
			t.Errorf("%s: row twice for %s", c.Grant(), c.Identity)
		}
		seen[key] = true
	}
}
