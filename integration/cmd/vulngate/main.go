// Command vulngate reads `govulncheck -format json` on standard input and decides
// what fails CI:
//
//   - a reachable vulnerability (the call graph reaches a vulnerable symbol) in a
//     module dependency fails: go.mod pins those versions, so bumping them is ours
//     to do;
//   - a reachable vulnerability in the standard library fails too, with the Go
//     release that fixes it: the shipped binary is built with the toolchain the
//     Taskfile pins (GOTOOLCHAIN), so the fix is to move that pin. -warn-stdlib only
//     reports them, for the time between a Go advisory and the pinned release moving.
//
// Findings that are only imported or required, not reached, are counted, not listed.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// message is one value of govulncheck's JSON stream; only findings matter here.
type message struct {
	Finding *finding `json:"finding"`
}

type finding struct {
	OSV          string  `json:"osv"`
	FixedVersion string  `json:"fixed_version"`
	Trace        []frame `json:"trace"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
}

// vuln is one vulnerability reached in one module.
type vuln struct {
	id, module, version, fixed string
	symbols                    map[string]bool
}

func main() {
	warnStdlib := flag.Bool("warn-stdlib", false, "report standard-library findings without failing")
	flag.Parse()
	failed, err := gate(os.Stdin, os.Stdout, !*warnStdlib)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulngate:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// gate reports the findings of r on out and says whether CI must fail.
func gate(r io.Reader, out io.Writer, strictStdlib bool) (bool, error) {
	dec := json.NewDecoder(r)
	reached := map[string]*vuln{}
	unreached := 0
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, fmt.Errorf("not govulncheck JSON output: %w", err)
		}
		if m.Finding == nil || len(m.Finding.Trace) == 0 {
			continue
		}
		top := m.Finding.Trace[0]
		if top.Function == "" {
			unreached++
			continue
		}
		key := m.Finding.OSV + " " + top.Module
		v := reached[key]
		if v == nil {
			v = &vuln{id: m.Finding.OSV, module: top.Module, version: top.Version, fixed: m.Finding.FixedVersion, symbols: map[string]bool{}}
			reached[key] = v
		}
		sym := top.Package + "." + top.Function
		if top.Receiver != "" {
			sym = top.Package + "." + strings.TrimPrefix(top.Receiver, "*") + "." + top.Function
		}
		v.symbols[sym] = true
	}
	var modules, stdlib []*vuln
	for _, v := range reached {
		if v.module == "stdlib" || v.module == "toolchain" {
			stdlib = append(stdlib, v)
		} else {
			modules = append(modules, v)
		}
	}
	sortVulns(modules)
	sortVulns(stdlib)
	for _, v := range modules {
		fmt.Fprintf(out, "FAIL %s in %s@%s, reached through %s: upgrade to %s (go get %s@%s)\n", v.id, v.module, v.version, symbolList(v), v.fixed, v.module, v.fixed)
	}
	for _, v := range stdlib {
		verdict := "WARN"
		if strictStdlib {
			verdict = "FAIL"
		}
		fmt.Fprintf(out, "%s %s in the Go standard library %s, reached through %s: fixed in Go %s; build with that toolchain or newer\n", verdict, v.id, v.version, symbolList(v), strings.TrimPrefix(v.fixed, "v"))
	}
	fmt.Fprintf(out, "govulncheck: %d reachable in module dependencies, %d reachable in the standard library, %d more imported or required but not reached\n", len(modules), len(stdlib), unreached)
	return len(modules) > 0 || (strictStdlib && len(stdlib) > 0), nil
}

func sortVulns(vs []*vuln) {
	sort.Slice(vs, func(i, j int) bool { return vs[i].id+vs[i].module < vs[j].id+vs[j].module })
}

func symbolList(v *vuln) string {
	var syms []string
	for s := range v.symbols {
		syms = append(syms, s)
	}
	sort.Strings(syms)
	if len(syms) > 3 {
		return strings.Join(syms[:3], ", ") + fmt.Sprintf(" and %d more", len(syms)-3)
	}
	return strings.Join(syms, ", ")
}
