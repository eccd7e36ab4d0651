package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `{"config":{"protocol_version":"v1.0.0"}}
{"progress":{"message":"Scanning your code"}}
{"osv":{"id":"GO-2026-0001"}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.59.0","package":"golang.org/x/net/http2","function":"RoundTrip","receiver":"*Transport"}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.59.0"}]}}
{"finding":{"osv":"GO-2026-0002","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Serve"}]}}
{"finding":{"osv":"GO-2026-0003","fixed_version":"v1.2.3","trace":[{"module":"example.com/unused","version":"v1.0.0","package":"example.com/unused"}]}}
`

func TestVulngate(t *testing.T) {
	t.Run("a reachable vulnerability in a dependency fails with the upgrade to make", func(t *testing.T) {
		var out bytes.Buffer
		failed, err := gate(strings.NewReader(sample), &out, false)
		if err != nil {
			t.Fatal(err)
		}
		if !failed {
			t.Fatalf("a reachable x/net vulnerability must fail:\n%s", out.String())
		}
		for _, want := range []string{"FAIL GO-2026-0001 in golang.org/x/net@v0.59.0", "golang.org/x/net/http2.Transport.RoundTrip", "go get golang.org/x/net@v0.60.0", "WARN GO-2026-0002", "fixed in Go 1.26.9", "1 reachable in module dependencies, 1 reachable in the standard library, 2 more"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, out.String())
			}
		}
	})
	t.Run("standard library findings alone warn unless strict", func(t *testing.T) {
		stdlibOnly := `{"finding":{"osv":"GO-2026-0002","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Serve"}]}}`
		for strict, wantFail := range map[bool]bool{false: false, true: true} {
			var out bytes.Buffer
			failed, err := gate(strings.NewReader(stdlibOnly), &out, strict)
			if err != nil || failed != wantFail {
				t.Errorf("strict=%v: failed=%v err=%v, want failed=%v\n%s", strict, failed, err, wantFail, out.String())
			}
		}
	})
	t.Run("input that is not govulncheck JSON is an error", func(t *testing.T) {
		if _, err := gate(strings.NewReader("Scanning your code...\n"), &bytes.Buffer{}, false); err == nil {
			t.Fatal("text output must be refused, not read as no findings")
		}
	})
}
