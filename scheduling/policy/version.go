package policy

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
)

// MinServerVersion is the first Kubernetes release serving MutatingAdmissionPolicy as
// admissionregistration.k8s.io/v1 (GA in 1.36). 1.34 and 1.35 serve it as v1beta1
// only when the API and its feature gate are turned on; Render does not write v1beta1.
var MinServerVersion = version.MajorMinor(1, 36)

// CheckServerVersion refuses an API server older than MinServerVersion, saying what
// to use instead.
func CheckServerVersion(gitVersion string) error {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return fmt.Errorf("could not read the API server's version %q: %w", gitVersion, err)
	}
	if !v.AtLeast(MinServerVersion) {
		return fmt.Errorf("the API server is %s: the policy backend needs Kubernetes %s or newer (MutatingAdmissionPolicy v1; 1.34 and 1.35 have it only as v1beta1 behind a feature gate, which render does not write): use the webhook (serve)", gitVersion, MinServerVersion)
	}
	return nil
}
