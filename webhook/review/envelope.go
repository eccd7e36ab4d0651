package review

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/slok/kubewebhook/v2/pkg/model"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The guard and kubewebhook's handler (the slow path, below and in http.go) read an
// AdmissionReview three times: the guard's envelope, kubewebhook's apiVersion/kind
// pass, its decode into k8s.io/api's AdmissionReview (the object copied as raw
// bytes), then DecodeObject reads the object again. decodeReview reads it once, with
// the object going straight into the narrow types of podfields.go (reviewjson.go);
// the handler uses it whenever the answer is the one the slow path would give, and
// hands every other body to the slow path unchanged.

// decodedRequest is k8s.io/api's AdmissionRequest, the type kubewebhook decodes
// (admission.k8s.io/v1beta1's has the same fields), whose object is decoded into
// objectEnvelope instead of being copied as raw bytes: Object here is shallower than
// the embedded AdmissionRequest.Object, so encoding/json's rules give "object" to it.
// oldObject and options stay raw, as kubewebhook gives them.
type decodedRequest struct {
	admissionv1.AdmissionRequest
	Object *objectEnvelope `json:"object"`
}

// model is the review as kubewebhook's model, built by kubewebhook's own
// constructors from the request as kubewebhook would have decoded it; only
// NewObjectRaw is nil (the object travels decoded, see withDecodedObject).
func (rev *decodedReview) model() model.AdmissionReview {
	req := &rev.Request.AdmissionRequest
	if rev.APIVersion == "admission.k8s.io/v1beta1" {
		return model.NewAdmissionReviewV1Beta1(&admissionv1beta1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: rev.APIVersion, Kind: rev.Kind},
			Request: &admissionv1beta1.AdmissionRequest{
				UID: req.UID, Kind: req.Kind, Resource: req.Resource, SubResource: req.SubResource,
				RequestKind: req.RequestKind, RequestResource: req.RequestResource, RequestSubResource: req.RequestSubResource,
				Name: req.Name, Namespace: req.Namespace, Operation: admissionv1beta1.Operation(req.Operation),
				UserInfo: req.UserInfo, OldObject: req.OldObject, DryRun: req.DryRun, Options: req.Options,
			},
		})
	}
	return model.NewAdmissionReviewV1(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: rev.APIVersion, Kind: rev.Kind},
		Request:  req,
	})
}

// reviewEnvelope is the part of an AdmissionReview the guard checks.
type reviewEnvelope struct {
	APIVersion string
	Kind       string
	// Request is true when .request is a JSON object ("request": null is missing).
	Request bool
}

// requestKey is the top-level key kubewebhook dereferences without checking.
var requestKey = []byte(`"request"`)

// readEnvelope reads apiVersion, kind and whether there is a request, the way
// kubewebhook's decoder will: keys match case-sensitively and the last of a repeated
// key wins. The API server writes kind, apiVersion, then request, so the common case
// reads three keys and the '{' that opens request and stops, without scanning the
// object (most of the body); kubewebhook validates the rest when it decodes it.
func readEnvelope(body []byte) (reviewEnvelope, error) {
	if env, ok := scanEnvelopePrefix(body); ok {
		return env, nil
	}
	return walkEnvelope(body)
}

// scanEnvelopePrefix is the fast path: it succeeds only when kind and apiVersion come
// before request, as plain strings, and request opens an object, and no second
// request key can follow: the body holds "request" once and no \u escape of a
// lowercase letter (\u0061 to \u007a) that could spell another. encoding/json, and so
// the API server, only escapes <, >, &, U+2028, U+2029 and control characters.
// Anything else (whitespace aside) is left to walkEnvelope. It reads bytes itself:
// json.Decoder.Token allocates about 40 times for these six tokens.
func scanEnvelopePrefix(body []byte) (reviewEnvelope, bool) {
	var env reviewEnvelope
	if bytes.Count(body, requestKey) != 1 || bytes.Contains(body, []byte(`\u006`)) || bytes.Contains(body, []byte(`\u007`)) {
		return env, false
	}
	s := prefixScanner{b: body}
	if !s.byte('{') {
		return env, false
	}
	var seenKind, seenVersion bool
	for range 3 {
		key, ok := s.str()
		if !ok || !s.byte(':') {
			return env, false
		}
		switch string(key) {
		case "kind", "apiVersion":
			v, ok := s.str()
			if !ok || !s.byte(',') {
				return env, false
			}
			if string(key) == "kind" {
				env.Kind, seenKind = string(v), true
			} else {
				env.APIVersion, seenVersion = string(v), true
			}
		case "request":
			env.Request = s.byte('{')
			return env, env.Request && seenKind && seenVersion
		default:
			return env, false
		}
	}
	return env, false
}

// prefixScanner reads the few JSON tokens scanEnvelopePrefix accepts.
type prefixScanner struct {
	b []byte
	i int
}

func (s *prefixScanner) skipSpace() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// byte consumes c after optional whitespace.
func (s *prefixScanner) byte(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str consumes a string without escapes or control characters and returns its bytes.
func (s *prefixScanner) str() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	for j := s.i; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			v := s.b[s.i:j]
			s.i = j + 1
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// walkEnvelope reads every top-level key of body (any order), skipping the values of
// other keys and of request.
func walkEnvelope(body []byte) (reviewEnvelope, error) {
	var env reviewEnvelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil {
		return env, err
	} else if tok != json.Delim('{') {
		return env, errors.New("want a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return env, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return env, err
		}
		switch key {
		case "kind", "apiVersion":
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return env, errors.New(key + " must be a string")
			}
			if key == "kind" {
				env.Kind = s
			} else {
				env.APIVersion = s
			}
		case "request":
			env.Request = raw[0] == '{'
		}
	}
	if _, err := dec.Token(); err != nil {
		return env, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return env, errors.New("unexpected data after the AdmissionReview")
	}
	return env, nil
}
