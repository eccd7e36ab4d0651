package main

import (
	"fmt"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
)

// newKlogLogger is the logr.Logger klog.SetLogger gets: client-go's messages (watch
// errors, throttling, exec plugin failures) become entries of our logrus logger with
// their key/value pairs as fields, instead of plain text interleaved with our JSON.
func newKlogLogger(l *logrus.Logger) logr.Logger {
	return logr.New(&logrusSink{entry: logrus.NewEntry(l)})
}

// logrusSink implements logr.LogSink on a logrus entry.
type logrusSink struct {
	entry *logrus.Entry
	name  string
}

// level maps klog verbosity onto logrus: V(0) is info, V(1)–V(4) debug, more trace.
func (s *logrusSink) level(v int) logrus.Level {
	switch {
	case v <= 0:
		return logrus.InfoLevel
	case v <= 4:
		return logrus.DebugLevel
	}
	return logrus.TraceLevel
}

func (s *logrusSink) Init(logr.RuntimeInfo) {}

func (s *logrusSink) Enabled(v int) bool { return s.entry.Logger.IsLevelEnabled(s.level(v)) }

func (s *logrusSink) Info(v int, msg string, kv ...any) {
	s.with(kv).Log(s.level(v), msg)
}

func (s *logrusSink) Error(err error, msg string, kv ...any) {
	e := s.with(kv)
	if err != nil {
		e = e.WithError(err)
	}
	e.Error(msg)
}

func (s *logrusSink) WithValues(kv ...any) logr.LogSink {
	return &logrusSink{entry: s.with(kv), name: s.name}
}

func (s *logrusSink) WithName(name string) logr.LogSink {
	if s.name != "" {
		name = s.name + "." + name
	}
	return &logrusSink{entry: s.entry.WithField("logger", name), name: name}
}

// with adds key/value pairs as fields; a key that is not a string is printed, so a
// malformed call still shows what it said.
func (s *logrusSink) with(kv []any) *logrus.Entry {
	if len(kv) == 0 {
		return s.entry
	}
	fields := make(logrus.Fields, len(kv)/2+1)
	for i := 0; i < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		if i+1 < len(kv) {
			fields[key] = kv[i+1]
		} else {
			fields[key] = "(MISSING)"
		}
	}
	return s.entry.WithFields(fields)
}
