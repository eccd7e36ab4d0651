// Built by a Go older than 1.27, which has no encoding/json/v2: every review takes
// kubewebhook's own handler (the slow path), which decides the same, only with more
// allocations. The Taskfile builds with go1.27.3, so what we ship takes the fast path.

//go:build !go1.27

package review

import admissionv1 "k8s.io/api/admission/v1"

// singleDecode says whether this build decodes reviews in one pass.
const singleDecode = false

// decodedReview is an AdmissionReview decoded in one pass (only with Go 1.27+).
type decodedReview struct {
	APIVersion string
	Kind       string
	Request    *decodedRequest
	Response   *admissionv1.AdmissionResponse
}

// decodeReview always sends the body to the slow path before Go 1.27.
func decodeReview([]byte) (decodedReview, bool) { return decodedReview{}, false }
