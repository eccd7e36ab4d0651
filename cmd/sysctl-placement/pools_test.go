package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestPoolsFlagsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown output format is refused", []string{"-o", "wide"}, "use table, yaml or json"},
		{"a CA file and insecure TLS together are refused", []string{"--kubelet-ca-file", "x", "--kubelet-insecure-tls"}, "contradict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"pools"}, tc.args...), nil, &stdout, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want failure mentioning %q", code, stderr.String(), tc.want)
			}
		})
	}
}
