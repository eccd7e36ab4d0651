package webhook

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
	"github.com/sysctl-placement/sysctl-placement/webhook/internal/jsonbytes"
	"github.com/sysctl-placement/sysctl-placement/webhook/review"
)

// operation is one RFC 6902 JSON patch operation. Value is an interface so that
// `false` is written (omitempty only drops a nil interface).
type operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// patchBuilder writes operations that touch only the paths a decision owns. It works
// from the typed object only to know which parents exist; it never replaces a parent
// that exists, so fields this build's k8s.io/api does not know survive untouched.
type patchBuilder struct {
	ops []operation
}

func (b *patchBuilder) add(path string, value any) {
	if b.ops == nil {
		b.ops = make([]operation, 0, 8) // a placed pod's patch has four to six operations
	}
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

// marshal returns the operations as a JSON patch, or emptyPatch. It writes the JSON
// that encoding/json writes for b.ops, by hand for the values placement adds to every
// pod (strings, booleans, string maps, tolerations): through reflection they were
// a third of the patch's cost.
func (b *patchBuilder) marshal() ([]byte, error) {
	if len(b.ops) == 0 {
		return emptyPatch, nil
	}
	out := make([]byte, 0, 128*len(b.ops))
	out = append(out, '[')
	for i, op := range b.ops {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"op":`...)
		out = jsonbytes.String(out, op.Op)
		out = append(out, `,"path":`...)
		out = jsonbytes.String(out, op.Path)
		if op.Value != nil {
			out = append(out, `,"value":`...)
			var err error
			if out, err = jsonbytes.Value(out, op.Value); err != nil {
				return nil, err
			}
		}
		out = append(out, '}')
	}
	return append(out, ']'), nil
}

// pointerEscape escapes a map key for a JSON pointer (RFC 6901).
func pointerEscape(key string) string {
	if !strings.ContainsAny(key, "~/") {
		return key
	}
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

// addSpecChanges appends the operations for ch against spec, located at paths.Spec.
// ch is a pointer: Change(&ch) on a copy would move the copy to the heap on every
// admission.
func (b *patchBuilder) addSpecChanges(paths review.Paths, spec *corev1.PodSpec, ch *scheduling.Changes) {
	b.dropSysctls(paths.Spec, spec, ch.DroppedSysctls)
	for i := range scheduling.HostNamespaces {
		if v := *scheduling.HostNamespaces[i].Change(ch); v != nil {
			b.add(paths.Spec+"/"+scheduling.HostNamespaces[i].Field, *v)
		}
	}
	b.addNodeSelector(paths.Spec, spec, ch.NodeSelector)
	b.addAffinityTerms(paths.Spec, spec, ch.AffinityTerms)
	b.addTolerations(paths.Spec, spec, ch.Tolerations)
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

// addMetadataEntry sets key in metadata.<field> (annotations or labels) without
// touching the other entries.
func (b *patchBuilder) addMetadataEntry(metadataPath, field string, existing map[string]string, key, value string) {
	if existing == nil {
		b.add(metadataPath+"/"+field, map[string]string{key: value})
		return
	}
	b.add(metadataPath+"/"+field+"/"+pointerEscape(key), value)
}
