package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestJSONFormatter: every line reads back as the same JSON object logrus's own
// JSONFormatter writes for the entry, with its keys sorted and one line per entry.
func TestJSONFormatter(t *testing.T) {
	at := time.Date(2026, 12, 2, 3, 4, 5, 678, time.FixedZone("CET", 3600))
	cases := map[string]struct {
		level  logrus.Level
		msg    string
		fields logrus.Fields
	}{
		"the admission line": {logrus.InfoLevel, "admission reviewed", logrus.Fields{
			"webhook": "mutating", "uid": "6f1c2f7e", "namespace": "team", "dryRun": false, "kind": "Pod",
			"name": "web-abcde", "outcome": "Placed", "reason": "Placed", "allowed": true, "pools": []string{"ipc", "net"}, "version": "v1.2.3",
		}},
		"no fields": {logrus.WarnLevel, "", nil},
		"an error field is its text": {logrus.ErrorLevel, "could not plan placement", logrus.Fields{
			logrus.ErrorKey: errors.New(`pool "a" <b> & "c"`), "namespace": "ns",
		}},
		"a field named like the formatter's own keys is renamed": {logrus.InfoLevel, "m", logrus.Fields{
			"msg": "field msg", "level": 3, "time": "then", "logrus_error": "x", "a": "b",
		}},
		"a field renamed replaces one already named fields.<key>": {logrus.InfoLevel, "m", logrus.Fields{
			"msg": "field msg", "fields.msg": "older", "fields.level": "kept", "time": 1,
		}},
		"text that must be escaped": {logrus.DebugLevel, "tab\there \"quoted\" <html> & \u2028 \x01 é 🙂", logrus.Fields{
			"k\"ey": "line\nbreak", "invalid": "\xff\xfe",
		}},
		"numbers, nil and other types through encoding/json": {logrus.InfoLevel, "types", logrus.Fields{
			"int": -42, "int64": int64(math.MaxInt64), "float": 2.5, "uint": uint8(7), "nil": nil, "nilSlice": []string(nil),
			"empty": []string{}, "map": map[string]int{"b": 2, "a": 1}, "duration": 1500 * time.Millisecond, "struct": struct{ A string }{"x"},
		}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			entry := &logrus.Entry{Logger: logrus.New(), Data: c.fields, Time: at, Level: c.level, Message: c.msg}
			if entry.Data == nil {
				entry.Data = logrus.Fields{}
			}
			want, err := (&logrus.JSONFormatter{}).Format(entry)
			if err != nil {
				t.Fatal(err)
			}
			got, err := JSONFormatter{}.Format(entry)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(got, []byte("}\n")) || bytes.Count(got, []byte("\n")) != 1 {
				t.Fatalf("want one JSON object on one line, got %q", got)
			}
			var gotObj, wantObj map[string]any
			if err := json.Unmarshal(got, &gotObj); err != nil {
				t.Fatalf("the line is not JSON: %v\n%s", err, got)
			}
			if err := json.Unmarshal(want, &wantObj); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotObj, wantObj) {
				t.Errorf("the line reads\n%s\nlogrus writes\n%s", got, want)
			}
			if keys := topLevelKeys(t, got); !slices.IsSorted(keys) || len(keys) != len(wantObj) {
				t.Errorf("want the %d keys once each and sorted, as logrus writes them; got %q", len(wantObj), keys)
			}
		})
	}
}

// TestJSONFormatterWritesIntoLogrusBuffer: through a real logger (which lends the
// formatter a pooled buffer) consecutive lines are whole and separate.
func TestJSONFormatterWritesIntoLogrusBuffer(t *testing.T) {
	var out bytes.Buffer
	l := logrus.New()
	l.Out, l.Formatter = &out, JSONFormatter{}
	for i := range 3 {
		l.WithFields(logrus.Fields{"i": i, "namespace": strings.Repeat("n", i*50)}).Info("admission reviewed")
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %d:\n%s", len(lines), out.String())
	}
	for i, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, line)
		}
		if obj["i"] != float64(i) || obj["msg"] != "admission reviewed" || obj["level"] != "info" {
			t.Errorf("line %d reads %v", i, obj)
		}
	}
}

// TestJSONFormatterReportsWhatItCannotEncode: like logrus, a value encoding/json
// refuses is an error, not a broken line.
func TestJSONFormatterReportsWhatItCannotEncode(t *testing.T) {
	entry := &logrus.Entry{Logger: logrus.New(), Data: logrus.Fields{"ch": make(chan int)}, Time: time.Now(), Message: "m"}
	if b, err := (JSONFormatter{}).Format(entry); err == nil || !strings.Contains(err.Error(), "failed to marshal fields to JSON") {
		t.Errorf("want an error saying the fields do not marshal, got %v (%q)", err, b)
	}
}

func topLevelKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// BenchmarkJSONFormatter is the per-admission line through a logger writing to
// io.Discard, with ours and with logrus's formatter.
func BenchmarkJSONFormatter(b *testing.B) {
	for _, f := range []struct {
		name string
		f    logrus.Formatter
	}{{"ours", JSONFormatter{}}, {"logrus", &logrus.JSONFormatter{}}} {
		b.Run(f.name, func(b *testing.B) {
			l := logrus.New()
			l.Out, l.Formatter = io.Discard, f.f
			log := l.WithField("version", "bench")
			b.ReportAllocs()
			for b.Loop() {
				log.WithFields(logrus.Fields{"webhook": "mutating", "uid": "6f1c2f7e-1b6e-4c1c-9d5e-1f2a3b4c5d6e", "namespace": "team",
					"dryRun": false, "kind": "Pod", "name": "web-7d9f8b-abcde", "outcome": "Placed", "reason": "Placed", "allowed": true,
					"pools": []string{"ipc"}}).Info("admission reviewed")
			}
		})
	}
}
