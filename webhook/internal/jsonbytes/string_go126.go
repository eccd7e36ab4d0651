// Built by a Go older than 1.27, which has no encoding/json/jsontext.

//go:build !go1.27

package jsonbytes

import "encoding/json"

// String appends s as a JSON string, as encoding/json writes it.
func String(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
