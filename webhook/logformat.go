package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
)

// JSONFormatter writes each log entry as logrus's JSONFormatter (with its defaults)
// writes it: one JSON object per line with the entry's fields, "level", "msg" and
// "time" (RFC 3339), keys sorted, an error field as its Error() text, and a field
// named like one of those keys renamed "fields.<key>". What differs is the cost: it
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
		keys = append(keys, k)
	}
	keys = append(keys, logrus.FieldKeyLevel, logrus.FieldKeyMsg, logrus.FieldKeyTime)
	name := func(k string) string { return k }
	if slices.ContainsFunc(logrusKeys, func(k string) bool { _, ok := entry.Data[k]; return ok }) {
		name = func(k string) string {
			if slices.Contains(logrusKeys, k) {
				return "fields." + k
			}
			return k
		}
		for i := range len(entry.Data) {
			keys[i] = name(keys[i])
		}
	}
	slices.Sort(keys)

	var b []byte
	if entry.Buffer != nil {
		b = entry.Buffer.AvailableBuffer()
	}
	b = append(b, '{')
	// Only the three keys the formatter adds can repeat a renamed field's, so each
	// key is looked up among the fields by the name it was renamed from.
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		switch {
		case k == logrus.FieldKeyLevel:
			b = appendJSONString(b, entry.Level.String())
		case k == logrus.FieldKeyMsg:
			b = appendJSONString(b, entry.Message)
		case k == logrus.FieldKeyTime:
			b = append(b, '"')
			b = entry.Time.AppendFormat(b, time.RFC3339)
			b = append(b, '"')
		default:
			field := k
			if _, ok := entry.Data[k]; !ok {
				field = k[len("fields."):]
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

// appendLogValue appends v as JSON: the types our log lines carry directly, any other
// through encoding/json (an error as its text, as logrus writes it).
func appendLogValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendJSONString(b, v), nil
	case error:
		return appendJSONString(b, v.Error()), nil
	case bool:
		return strconv.AppendBool(b, v), nil
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
			b = appendJSONString(b, s)
		}
		return append(b, ']'), nil
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	if err := enc.Encode(v); err != nil {
		return b, err
	}
	return append(b, bytes.TrimSuffix(out.Bytes(), []byte{'\n'})...), nil
}
