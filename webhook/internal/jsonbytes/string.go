// encoding/json/jsontext is new in Go 1.27; the module's go line says 1.26 (see
// webhook/review/reviewjson.go), so this file asks for 1.27 itself and string_go126.go
// stands in for older Go.

//go:build go1.27

package jsonbytes

import "encoding/json/jsontext"

// String appends s as a JSON string. Invalid UTF-8 is written as U+FFFD, as
// encoding/json writes it (AppendQuote's error only says it did so).
func String(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
}
