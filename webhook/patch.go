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
		out = appendJSONString(out, op.Op)
		out = append(out, `,"path":`...)
		out = appendJSONString(out, op.Path)
		if op.Value != nil {
			out = append(out, `,"value":`...)
			var err error
			if out, err = appendJSONValue(out, op.Value); err != nil {
				return nil, err
			}
		}
		out = append(out, '}')
	}
	return append(out, ']'), nil
}

// appendJSONValue appends v as encoding/json would.
func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return appendJSONString(b, v), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case map[string]string:
		if v != nil {
			return appendStringMap(b, v), nil
		}
	case []corev1.Toleration:
		if v != nil {
			b = append(b, '[')
			for i := range v {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendToleration(b, &v[i])
			}
			return append(b, ']'), nil
		}
	case corev1.Toleration:
		return appendToleration(b, &v), nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, raw...), nil
}

// appendStringMap writes m with its keys sorted, as encoding/json does.
func appendStringMap(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	if len(m) == 1 {
		for k, v := range m {
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, v)
		}
		return append(b, '}')
	}
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}

// appendToleration writes t with corev1.Toleration's field names and omitempty.
func appendToleration(b []byte, t *corev1.Toleration) []byte {
	b = append(b, '{')
	b = appendStringField(b, `"key":`, t.Key)
	b = appendStringField(b, `"operator":`, string(t.Operator))
	b = appendStringField(b, `"value":`, t.Value)
	b = appendStringField(b, `"effect":`, string(t.Effect))
	if t.TolerationSeconds != nil {
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = append(b, `"tolerationSeconds":`...)
		b = strconv.AppendInt(b, *t.TolerationSeconds, 10)
	}
	return append(b, '}')
}

// appendStringField writes name and value (omitted when empty, as omitempty does),
// after a comma unless it is the first field of the object.
func appendStringField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	if b[len(b)-1] != '{' {
		b = append(b, ',')
	}
	b = append(b, name...)
	return appendJSONString(b, value)
}

// pointerEscape escapes a map key for a JSON pointer (RFC 6901).
func pointerEscape(key string) string {
	if !strings.ContainsAny(key, "~/") {
		return key
	}
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

// addSpecChanges appends the operations for ch against spec, located at paths.spec.
// ch is a pointer: Change(&ch) on a copy would move the copy to the heap on every
// admission.
func (b *patchBuilder) addSpecChanges(paths podPaths, spec *corev1.PodSpec, ch *scheduling.Changes) {
	b.dropSysctls(paths.spec, spec, ch.DroppedSysctls)
	for i := range scheduling.HostNamespaces {
		if v := *scheduling.HostNamespaces[i].Change(ch); v != nil {
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

// addMetadataEntry sets key in metadata.<field> (annotations or labels) without
// touching the other entries.
func (b *patchBuilder) addMetadataEntry(metadataPath, field string, existing map[string]string, key, value string) {
	if existing == nil {
		b.add(metadataPath+"/"+field, map[string]string{key: value})
		return
	}
	b.add(metadataPath+"/"+field+"/"+pointerEscape(key), value)
}
