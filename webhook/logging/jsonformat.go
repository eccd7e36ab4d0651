package logging

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/sysctl-placement/sysctl-placement/webhook/internal/jsonbytes"
)

// JSONFormatter writes for each log entry the JSON object logrus's JSONFormatter (with
// its defaults) writes: one object per line with the entry's fields, "level", "msg"
// and "time" (RFC 3339), keys sorted, an error field as its Error() text, and a field
// named like one of those keys renamed "fields.<key>" (replacing a field already named
// so, as logrus does). The same object, not the same bytes: strings are escaped as
// encoding/json/v2 escapes them, so '<', '>', '&' and U+2028 are written as they are
// where logrus writes \u003c and the like. What differs is the cost: it
// appends strings, booleans and numbers itself instead of copying the fields into a
// second map and encoding it with reflection, so the line `serve` writes for every
// admission costs about a fifth of logrus's (BenchmarkJSONFormatter). A value of any
// other type is encoded with encoding/json, as logrus does.
//
// Two things logrus writes are not reachable from a Formatter outside logrus and
// are left out: "logrus_error" (set when WithField is given a func, which we never
// log) and the caller fields (ReportCaller, which we never turn on).
type JSONFormatter struct{}

// The keys logrus's JSONFormatter writes itself; a field with one of these names is
// renamed "fields.<name>".
var logrusKeys = []string{logrus.FieldKeyTime, logrus.FieldKeyMsg, logrus.FieldKeyLevel, logrus.FieldKeyLogrusError}

// Format implements logrus.Formatter.
func (JSONFormatter) Format(entry *logrus.Entry) ([]byte, error) {
	// A stack array holds the keys of any line we write (ten fields at most).
	var stack [16]string
	keys := stack[:0]
	for k := range entry.Data {
		switch {
		case slices.Contains(logrusKeys, k):
			keys = append(keys, "fields."+k)
		case renamedFrom(entry.Data, k) != "":
			// Replaced by the field renamed to k, as in logrus's prefixFieldClashes.
		default:
			keys = append(keys, k)
		}
	}
	keys = append(keys, logrus.FieldKeyLevel, logrus.FieldKeyMsg, logrus.FieldKeyTime)
	slices.Sort(keys)

	var b []byte
	if entry.Buffer != nil {
		b = entry.Buffer.AvailableBuffer()
	}
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonbytes.String(b, k)
		b = append(b, ':')
		switch k {
		case logrus.FieldKeyLevel:
			b = jsonbytes.String(b, entry.Level.String())
		case logrus.FieldKeyMsg:
			b = jsonbytes.String(b, entry.Message)
		case logrus.FieldKeyTime:
			b = append(b, '"')
			b = entry.Time.AppendFormat(b, time.RFC3339)
			b = append(b, '"')
		default:
			field := k
			if from := renamedFrom(entry.Data, k); from != "" {
				field = from
			}
			var err error
			if b, err = appendLogValue(b, entry.Data[field]); err != nil {
				return nil, fmt.Errorf("failed to marshal fields to JSON, %w", err)
			}
		}
	}
	b = append(b, '}', '\n')
	if entry.Buffer != nil {
		entry.Buffer.Write(b)
		return entry.Buffer.Bytes(), nil
	}
	return b, nil
}

// renamedFrom is the field renamed to k ("time" for "fields.time" when the fields
// have a "time"), or "".
func renamedFrom(data logrus.Fields, k string) string {
	from, ok := strings.CutPrefix(k, "fields.")
	if !ok || !slices.Contains(logrusKeys, from) {
		return ""
	}
	if _, ok := data[from]; !ok {
		return ""
	}
	return from
}

// appendLogValue appends v as JSON: an error as its text (as logrus writes it), the
// other types our log lines carry without reflection, anything else as
// jsonbytes.Value (the patch's encoder) writes it.
func appendLogValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case error:
		return jsonbytes.String(b, v.Error()), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case []string:
		if v == nil {
			return append(b, "null"...), nil
		}
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonbytes.String(b, s)
		}
		return append(b, ']'), nil
	}
	return jsonbytes.Value(b, v)
}
