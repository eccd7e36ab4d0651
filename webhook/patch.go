package webhook

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// operation is one RFC 6902 JSON patch operation. Value is an interface so that
// `false` is written (omitempty only drops a nil interface).
type operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// podPaths says where a pod spec and its metadata sit inside the admitted object:
// "/spec" and "/metadata" for a Pod, "/spec/template/spec" for a Deployment, and so on.
type podPaths struct {
	spec     string
	metadata string
}

var (
	podObjectPaths      = podPaths{spec: "/spec", metadata: "/metadata"}
	templateObjectPaths = podPaths{spec: "/spec/template/spec", metadata: "/spec/template/metadata"}
	cronJobObjectPaths  = podPaths{spec: "/spec/jobTemplate/spec/template/spec", metadata: "/spec/jobTemplate/spec/template/metadata"}
	podTemplatePaths    = podPaths{spec: "/template/spec", metadata: "/template/metadata"}
)

// patchBuilder writes operations that touch only the paths a decision owns. It works
// from the typed object only to know which parents exist; it never replaces a parent
// that exists, so fields this build's k8s.io/api does not know survive untouched.
type patchBuilder struct {
	ops []operation
}

func (b *patchBuilder) add(path string, value any) {
	b.ops = append(b.ops, operation{Op: "add", Path: path, Value: value})
}

func (b *patchBuilder) remove(path string) {
	b.ops = append(b.ops, operation{Op: "remove", Path: path})
}

// emptyPatch is the answer when nothing changes. kubewebhook always sets patchType on
// a mutating response, and the API server refuses a patchType without a patch
// ("webhook returned response.patchType but not response.patch"), so "no change" is
// an empty JSON patch, never a missing one.
var emptyPatch = []byte("[]")

// marshal returns the operations as a JSON patch, or emptyPatch.
func (b *patchBuilder) marshal() ([]byte, error) {
	if len(b.ops) == 0 {
		return emptyPatch, nil
	}
	return json.Marshal(b.ops)
}

// pointerEscape escapes a map key for a JSON pointer (RFC 6901).
func pointerEscape(key string) string {
	if !strings.ContainsAny(key, "~/") {
		return key
	}
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

// addSpecChanges appends the operations for ch against spec, located at paths.spec.
func (b *patchBuilder) addSpecChanges(paths podPaths, spec *corev1.PodSpec, ch scheduling.Changes) {
	b.dropSysctls(paths.spec, spec, ch.DroppedSysctls)
	for i := range scheduling.HostNamespaces {
		if v := *scheduling.HostNamespaces[i].Change(&ch); v != nil {
			b.add(paths.spec+"/"+scheduling.HostNamespaces[i].Field, *v)
		}
	}
	b.addNodeSelector(paths.spec, spec, ch.NodeSelector)
	b.addAffinityTerms(paths.spec, spec, ch.AffinityTerms)
	b.addTolerations(paths.spec, spec, ch.Tolerations)
}

// dropSysctls removes the named sysctls, highest index first so earlier indexes stay valid.
func (b *patchBuilder) dropSysctls(specPath string, spec *corev1.PodSpec, names []string) {
	if len(names) == 0 || spec.SecurityContext == nil {
		return
	}
	drop := make(map[string]bool, len(names))
	for _, n := range names {
		drop[n] = true
	}
	sysctls := spec.SecurityContext.Sysctls
	for i := len(sysctls) - 1; i >= 0; i-- {
		if drop[sysctls[i].Name] {
			b.remove(specPath + "/securityContext/sysctls/" + strconv.Itoa(i))
		}
	}
}

func (b *patchBuilder) addNodeSelector(specPath string, spec *corev1.PodSpec, entries map[string]string) {
	if len(entries) == 0 {
		return
	}
	if spec.NodeSelector == nil {
		b.add(specPath+"/nodeSelector", entries)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		b.add(specPath+"/nodeSelector/"+pointerEscape(k), entries[k])
	}
}

// addAffinityTerms ANDs terms into every existing required nodeSelectorTerm. Terms are
// ORed by the scheduler, so appending a term would widen the pod's placement.
func (b *patchBuilder) addAffinityTerms(specPath string, spec *corev1.PodSpec, terms []corev1.NodeSelectorTerm) {
	if len(terms) == 0 {
		return
	}
	required := &corev1.NodeSelector{NodeSelectorTerms: terms}
	aff := spec.Affinity
	switch {
	case aff == nil:
		b.add(specPath+"/affinity", &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: required}})
		return
	case aff.NodeAffinity == nil:
		b.add(specPath+"/affinity/nodeAffinity", &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: required})
		return
	case aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil:
		b.add(specPath+"/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution", required)
		return
	}
	termsPath := specPath + "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"
	existing := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(existing) == 0 {
		b.add(termsPath, terms)
		return
	}
	merged := scheduling.AndTerms(existing, terms)
	if len(terms) > 1 {
		// (e1 ∨ e2) ∧ (p1 ∨ p2) = (e1∧p1) ∨ (e1∧p2) ∨ (e2∧p1) ∨ (e2∧p2): the list is
		// rewritten as the cross product; it is the only way to AND an OR.
		b.add(termsPath, merged)
		return
	}
	// The common case, one added term: merged[i] is existing[i] with requirements
	// appended, so each term is extended in place and everything else in it (fields
	// unknown to this build included) stays as it is.
	for i := range existing {
		termPath := termsPath + "/" + strconv.Itoa(i)
		b.appendRequirements(termPath+"/matchExpressions", existing[i].MatchExpressions, merged[i].MatchExpressions)
		b.appendRequirements(termPath+"/matchFields", existing[i].MatchFields, merged[i].MatchFields)
	}
}

// appendRequirements adds the requirements of after beyond those of before.
func (b *patchBuilder) appendRequirements(path string, before, after []corev1.NodeSelectorRequirement) {
	added := after[len(before):]
	if len(added) == 0 {
		return
	}
	if before == nil {
		b.add(path, added)
		return
	}
	for _, r := range added {
		b.add(path+"/-", r)
	}
}

func (b *patchBuilder) addTolerations(specPath string, spec *corev1.PodSpec, tolerations []corev1.Toleration) {
	if len(tolerations) == 0 {
		return
	}
	if spec.Tolerations == nil {
		b.add(specPath+"/tolerations", tolerations)
		return
	}
	for i := range tolerations {
		b.add(specPath+"/tolerations/-", tolerations[i])
	}
}

// addMetadataEntries sets entries in metadata.<field> (annotations or labels) without
// touching the other entries.
func (b *patchBuilder) addMetadataEntries(metadataPath, field string, existing map[string]string, entries map[string]string) {
	if len(entries) == 0 {
		return
	}
	if existing == nil {
		b.add(metadataPath+"/"+field, entries)
		return
	}
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		b.add(metadataPath+"/"+field+"/"+pointerEscape(k), entries[k])
	}
}
