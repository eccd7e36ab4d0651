// Package output holds what the commands print alike: the machine formats (JSON,
// YAML), the pool view that `pools` prints and `audit` embeds, and the words for what
// a decision adds to a pod, which `plan` and `audit` share.
package output

import (
	"encoding/json"
	"io"

	"sigs.k8s.io/yaml"
)

// WriteData writes v as indented JSON (format "json") or YAML: the machine outputs of
// pools and audit.
func WriteData(w io.Writer, format string, v any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	data, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// OrNone is s, or "<none>" for a table cell left empty.
func OrNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
