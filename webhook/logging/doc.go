// Package logging is how serve writes its log lines: a logrus Formatter that writes
// logrus's JSON object without reflection. Only cmd/sysctl-placement wires it in; the
// webhooks take any logrus.FieldLogger and know nothing of the format.
package logging
