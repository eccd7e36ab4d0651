package chartcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// ReadmePath is the chart's README.md, which Artifact Hub and `helm show readme` show.
func ReadmePath() string { return filepath.Join(ChartDir(), "README.md") }

// The values table sits between these lines of the README; the rest is written by hand.
const (
	valuesBegin = "<!-- values table: generated from values.yaml by `go tool task chart-readme`; edit values.yaml's comments instead -->"
	valuesEnd   = "<!-- end of values table -->"
)

// WithValuesTable returns readme with the text between its values markers replaced by
// the table of values.yaml (ValuesTable).
func WithValuesTable(readme, values []byte) ([]byte, error) {
	begin, end := bytes.Index(readme, []byte(valuesBegin)), bytes.Index(readme, []byte(valuesEnd))
	if begin < 0 || end < begin {
		return nil, fmt.Errorf("the chart README has no values table markers: put the lines\n%s\n%s\nwhere the table goes", valuesBegin, valuesEnd)
	}
	table, err := ValuesTable(values)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(readme[:begin+len(valuesBegin)])
	b.WriteString("\n\n")
	b.WriteString(table)
	b.WriteString("\n")
	b.Write(readme[end:])
	return b.Bytes(), nil
}

// ValuesTable is a Markdown table of every value in values.yaml, in the file's order:
// its key path, type, default (as JSON) and the comment written above it. A map that
// has a comment of its own gets a row too (its keys follow), so a comment that
// explains a group is shown once, where it was written.
func ValuesTable(values []byte) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return "", fmt.Errorf("values.yaml: %w", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return "", fmt.Errorf("values.yaml is not a map")
	}
	var b strings.Builder
	b.WriteString("| Key | Type | Default | Description |\n|---|---|---|---|\n")
	if err := valueRows(&b, "", doc.Content[0]); err != nil {
		return "", err
	}
	return b.String(), nil
}

func valueRows(b *strings.Builder, prefix string, m *yaml.Node) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, value := m.Content[i], m.Content[i+1]
		path := prefix + key.Value
		description := commentText(key.HeadComment, key.LineComment, value.LineComment)
		if value.Kind == yaml.MappingNode && len(value.Content) > 0 {
			if description != "" {
				fmt.Fprintf(b, "| `%s` | object | | %s |\n", path, description)
			}
			if err := valueRows(b, path+".", value); err != nil {
				return err
			}
			continue
		}
		var v any
		if err := value.Decode(&v); err != nil {
			return fmt.Errorf("values.yaml %s: %w", path, err)
		}
		js, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("values.yaml %s: %w", path, err)
		}
		fmt.Fprintf(b, "| `%s` | %s | `%s` | %s |\n", path, typeName(v), cell(string(js)), description)
	}
	return nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case int, int64, uint64, float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "list"
	default:
		return "object"
	}
}

// commentText joins comment lines into one table cell. A line indented past the "# "
// is an example and is shown as code.
func commentText(comments ...string) string {
	var parts []string
	for _, c := range comments {
		for line := range strings.Lines(c) {
			line = strings.TrimRight(line, "\r\n")
			text := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(line), "#"), " ")
			switch {
			case text == "":
			case strings.HasPrefix(text, " "):
				parts = append(parts, "`"+cell(strings.TrimSpace(text))+"`")
			default:
				parts = append(parts, htmlEscaper.Replace(cell(text)))
			}
		}
	}
	return strings.Join(parts, " ")
}

// cell escapes what would end a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// htmlEscaper keeps <placeholders> in prose from being read as HTML tags (inside
// code spans they are shown as written).
var htmlEscaper = strings.NewReplacer("<", "&lt;", ">", "&gt;")
