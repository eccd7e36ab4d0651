package main

import (
	"strings"
	"testing"
)

func TestAuditFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown output format is refused", []string{"-o", "wide"}, "use table, json or yaml"},
		{"an unknown --fail-on is refused", []string{"--fail-on", "slow"}, "use broken, unplaceable or both"},
		{"a zero page size is refused", []string{"--page-size", "0"}, "--page-size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCommand(t, "", append([]string{"audit"}, tc.args...)...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, errOut, tc.want)
			}
		})
	}
}
