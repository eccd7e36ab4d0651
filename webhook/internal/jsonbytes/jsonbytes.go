// Package jsonbytes appends to a byte slice the JSON encoding/json writes (the
// same values; strings are not HTML-escaped, so < stays <), without reflection for
// the few types the admission path writes on every review: the JSON patch, the
// response envelope and the log lines. The webhook's packages share it so that
// each writes JSON one way.
package jsonbytes

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Value appends v as encoding/json would: the types a patch and a log line carry
// without reflection, anything else through encoding/json.
func Value(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return String(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case map[string]string:
		if v != nil {
			return StringMap(b, v), nil
		}
	case []corev1.Toleration:
		if v != nil {
			b = append(b, '[')
			for i := range v {
				if i > 0 {
					b = append(b, ',')
				}
				b = Toleration(b, &v[i])
			}
			return append(b, ']'), nil
		}
	case corev1.Toleration:
		return Toleration(b, &v), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, raw...), nil
}

// StringMap appends m with its keys sorted, as encoding/json does.
func StringMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	if len(m) == 1 {
		for k, v := range m {
			b = String(b, k)
			b = append(b, ':')
			b = String(b, v)
		}
		return append(b, '}')
	}
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, k)
		b = append(b, ':')
		b = String(b, m[k])
	}
	return append(b, '}')
}

// Toleration appends t with corev1.Toleration's field names and omitempty.
func Toleration(b []byte, t *corev1.Toleration) []byte {
	b = append(b, '{')
	b = appendStringField(b, `"key":`, t.Key)
	b = appendStringField(b, `"operator":`, string(t.Operator))
	b = appendStringField(b, `"value":`, t.Value)
	b = appendStringField(b, `"effect":`, string(t.Effect))
	if t.TolerationSeconds != nil {
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = append(b, `"tolerationSeconds":`...)
		b = strconv.AppendInt(b, *t.TolerationSeconds, 10)
	}
	return append(b, '}')
}

// appendStringField writes name and value (omitted when empty, as omitempty does),
// after a comma unless it is the first field of the object.
func appendStringField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, name...)
	return String(b, value)
}
