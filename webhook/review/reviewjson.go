// encoding/json/v2 is in the standard library from Go 1.27 (the toolchain go.mod
// names); the module's go line still says 1.26 (so that `go tool task` runs on a
// machine whose Go is 1.26 with GOTOOLCHAIN=local), so this file asks for 1.27 itself.

//go:build go1.27

package review

import (
	"bytes"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
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
// sigs.k8s.io/json) and DecodeObject.
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

// UnmarshalJSONFrom decodes a pod's sysctls as []corev1.Sysctl would, but keeps the
// strings of the first scheduling.MaxSysctls+1 entries only; each later entry is
// checked (skipSysctl) and counted, and the list ends with that many empty entries,
// allocated once. The list keeps its length, which is all Plan reads of a list that
// long (the limits step denies it, stating the count, before it looks at any entry),
// and a review of 54,000 made-up sysctls holds one slice of empty entries instead of
// 108,000 strings and a slice grown by append.
func (l *sysctlList) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	switch dec.PeekKind() {
	case 'n':
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		*l = nil
		return nil
	case '[':
	default:
		// Not a list: the plain decode reports it.
		return jsonv2.UnmarshalDecode(dec, (*[]corev1.Sysctl)(l))
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	list := make([]corev1.Sysctl, 0, 8)
	skipped := 0
	for dec.PeekKind() != ']' {
		if len(list) > scheduling.MaxSysctls {
			if err := skipSysctl(dec); err != nil {
				return err
			}
			skipped++
			continue
		}
		list = append(list, corev1.Sysctl{})
		if err := jsonv2.UnmarshalDecode(dec, &list[len(list)-1]); err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	if skipped > 0 {
		list = append(make([]corev1.Sysctl, 0, len(list)+skipped), list...)[:len(list)+skipped]
	}
	*l = list
	return nil
}

// errNotSysctl: an entry of securityContext.sysctls that would not decode into a
// corev1.Sysctl. Its text is never shown: decodeReview then leaves the body to the
// slow path, which reports it.
var errNotSysctl = errors.New("a sysctls entry is not a {name, value} object of strings")

// skipSysctl reads one entry of a sysctls list without keeping its strings, and fails
// where decoding it into a corev1.Sysctl would: an entry that is not an object or null,
// or a name or value that is not a string or null (the decoder itself checks syntax,
// UTF-8 and duplicate member names). Other members are ignored, as the decode ignores
// them.
func skipSysctl(dec *jsontext.Decoder) error {
	switch dec.PeekKind() {
	case 'n':
		return dec.SkipValue()
	case '{':
	default:
		return errNotSysctl
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	var nameBuf [16]byte
	for dec.PeekKind() != '}' {
		raw, err := dec.ReadValue()
		if err != nil {
			return err
		}
		name, err := jsontext.AppendUnquote(nameBuf[:0], raw)
		if err != nil {
			return err
		}
		if k := dec.PeekKind(); (string(name) == "name" || string(name) == "value") && k != '"' && k != 'n' {
			return errNotSysctl
		}
		if err := dec.SkipValue(); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}
