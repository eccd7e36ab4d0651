// encoding/json/v2 is in the standard library from Go 1.27 (the toolchain go.mod
// names); the module's go line still says 1.26, so this file asks for 1.27 itself.

//go:build go1.27

package webhook

import (
	"bytes"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"

	admissionv1 "k8s.io/api/admission/v1"
)

// singleDecode says whether this build decodes reviews in one pass.
const singleDecode = true

// decodedReview is an AdmissionReview decoded in one pass.
type decodedReview struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Request    *decodedRequest `json:"request"`
	// Response is never sent to a webhook, but kubewebhook decodes it: a malformed one
	// must fail here too.
	Response *admissionv1.AdmissionResponse `json:"response"`
	// Other holds every other top-level member; see decodeReview.
	Other map[string]jsontext.Value `json:",embed"`
}

// decodeReview decodes body in one pass with encoding/json/v2: a single streaming
// read that validates as it goes (sigs.k8s.io/json's fork of encoding/json v1 first
// validates the whole body, then decodes it: two passes and four times the
// allocations). Its defaults are the guarantees the slow path gives: member names
// match case-sensitively, like kubewebhook's decoder (apimachinery's, with
// sigs.k8s.io/json) and decodeObject.
//
// ok is false, and the slow path answers with its own status and message, when the
// body does not decode, is not a v1 or v1beta1 AdmissionReview with a request, or may
// be read otherwise by the slow path. Where v2 is stricter than v1 it refuses (a
// duplicate member name, which v1 merges into a struct but keeps last as raw bytes;
// invalid UTF-8, which v1 replaces), so those bodies take the slow path too. The one
// place where kubewebhook is looser is its first pass for apiVersion and kind, with
// encoding/json v1, which matches names case-insensitively: a top-level "Kind" or
// "APIVERSION" (or a Kelvin-sign K) would override "kind" there, so any such member
// sends the body to the slow path. The API server sends none of these.
func decodeReview(body []byte) (rev decodedReview, ok bool) {
	err := jsonv2.Unmarshal(body, &rev,
		jsonv2.MatchCaseInsensitiveNames(false),
		jsontext.AllowDuplicateNames(false),
		jsontext.AllowInvalidUTF8(false))
	if err != nil || rev.Request == nil ||
		rev.Kind != "AdmissionReview" || (rev.APIVersion != "admission.k8s.io/v1" && rev.APIVersion != "admission.k8s.io/v1beta1") {
		return rev, false
	}
	for name := range rev.Other {
		if bytes.EqualFold([]byte(name), []byte("kind")) || bytes.EqualFold([]byte(name), []byte("apiVersion")) {
			return rev, false
		}
	}
	return rev, true
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 is written as U+FFFD,
// as encoding/json writes it (AppendQuote's error only says it did so).
func appendJSONString(b []byte, s string) []byte {
	b, _ = jsontext.AppendQuote(b, s)
	return b
}
