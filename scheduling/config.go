package scheduling

// This file reads and checks the admin's PlacementConfig. Validation collects every
// problem with its field path, so an admin editing the ConfigMap fixes all of them in
// one round instead of one per reload.

import (
	"fmt"
	pathpkg "path"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/component-helpers/node/util/sysctl"
	"sigs.k8s.io/yaml"
)

const (
	// ConfigAPIVersion is the only apiVersion ParseConfig accepts.
	ConfigAPIVersion = "sysctl-placement.io/v1alpha1"
	// ConfigKind is the only kind ParseConfig accepts.
	ConfigKind = "PlacementConfig"
)

// Discovery allowlist sources.
const (
	// AllowlistFromConfigz reads allowedUnsafeSysctls from each kubelet's /configz.
	AllowlistFromConfigz = "configz"
	// AllowlistFromAnnotation reads the allowlist from a node annotation written at
	// provisioning.
	AllowlistFromAnnotation = "annotation"
)

var (
	allowlistSources = []string{AllowlistFromConfigz, AllowlistFromAnnotation}
	taintEffects     = []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}
)

// sysctlPatternRE is the shape the kubelet accepts for --allowed-unsafe-sysctls
// entries: dot- or slash-separated lowercase segments, optionally ending in '*'.
var sysctlPatternRE = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*([a-z0-9][-_a-z0-9]*)?\*?$`)

// sysctlMaxLength is the longest sysctl name the API server accepts.
const sysctlMaxLength = 253

// ParseConfig decodes a PlacementConfig from YAML or JSON. Unknown fields are errors,
// because a misspelt field silently ignored is a pool that silently never matches.
// It checks apiVersion and kind; the rest is checked by Validate (or Compile).
func ParseConfig(data []byte) (*PlacementConfig, error) {
	var c PlacementConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("could not read placement config: %w", err)
	}
	var errs field.ErrorList
	if c.APIVersion != ConfigAPIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{ConfigAPIVersion}))
	}
	if c.Kind != ConfigKind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{ConfigKind}))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid placement config: %w", errs.ToAggregate())
	}
	return &c, nil
}

// Default fills the policy defaults: each host namespace's DefaultMode (see
// HostNamespaces) and unplaceable deny (a pod no kubelet admits loops forever in its
// ReplicaSet).
func (c *PlacementConfig) Default() {
	for i := range HostNamespaces {
		if mode := HostNamespaces[i].Mode(&c.Policy); *mode == "" {
			*mode = HostNamespaces[i].DefaultMode
		}
	}
	if c.Policy.Unplaceable == "" {
		c.Policy.Unplaceable = UnplaceableDeny
	}
	if c.Discovery != nil && c.Discovery.AllowlistFrom == "" {
		c.Discovery.AllowlistFrom = AllowlistFromConfigz
	}
}

// Validate reports every problem of the configuration with its field path. It expects
// Default to have run; empty policy fields are reported as unsupported values.
func (c *PlacementConfig) Validate() field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != "" && c.APIVersion != ConfigAPIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{ConfigAPIVersion}))
	}
	if c.Kind != "" && c.Kind != ConfigKind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{ConfigKind}))
	}
	if len(c.Pools) == 0 && c.Discovery == nil {
		errs = append(errs, field.Required(field.NewPath("pools"), "list at least one pool, or set discovery to read pools from nodes"))
	}
	errs = append(errs, validatePools(c.Pools, field.NewPath("pools"))...)
	errs = append(errs, c.Policy.validate(field.NewPath("policy"))...)
	if c.Discovery != nil {
		errs = append(errs, c.Discovery.validate(field.NewPath("discovery"))...)
	}
	return errs
}

func validatePools(pools []Pool, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := make(map[string]bool, len(pools))
	selectors := make(map[string]string, len(pools))
	for i := range pools {
		p := &pools[i]
		pp := path.Index(i)
		errs = append(errs, p.validate(pp)...)
		if p.Name != "" {
			if names[p.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			names[p.Name] = true
		}
		if len(p.NodeSelector) > 0 {
			key := selectorString(p.NodeSelector)
			if other, ok := selectors[key]; ok {
				errs = append(errs, field.Invalid(pp.Child("nodeSelector"), key,
					fmt.Sprintf("pool %s has the same selector; merge the two pools or tell their nodes apart with another label", other)))
			} else {
				selectors[key] = p.Name
			}
		}
	}
	return errs
}

func (p *Pool) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateName(p.Name, path.Child("name"), "name the pool; namespaces list pools by name", validation.IsDNS1123Subdomain)...)
	if len(p.NodeSelector) == 0 {
		errs = append(errs, field.Required(path.Child("nodeSelector"), "give at least one node label; an empty selector would match every node"))
	} else {
		errs = append(errs, metav1validation.ValidateLabels(p.NodeSelector, path.Child("nodeSelector"))...)
	}
	for j, t := range p.Taints {
		errs = append(errs, validateTaint(t, path.Child("taints").Index(j))...)
	}
	for j, s := range p.AllowedUnsafeSysctls {
		errs = append(errs, validateSysctlPattern(s, path.Child("allowedUnsafeSysctls").Index(j))...)
	}
	if _, err := parseKubeletVersion(p.KubeletVersion); err != nil {
		errs = append(errs, field.Invalid(path.Child("kubeletVersion"), p.KubeletVersion, err.Error()))
	}
	if _, err := parseKernelVersion(p.KernelVersion); err != nil {
		errs = append(errs, field.Invalid(path.Child("kernelVersion"), p.KernelVersion, err.Error()))
	}
	if p.NamespaceSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(p.NamespaceSelector, metav1validation.LabelSelectorValidationOptions{}, path.Child("namespaceSelector"))...)
	}
	return errs
}

// validateName reports an empty name as required, saying what to write, and every
// problem check (an apimachinery validation) finds in a given one.
func validateName(name string, path *field.Path, required string, check func(string) []string) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(path, required)}
	}
	var errs field.ErrorList
	for _, msg := range check(name) {
		errs = append(errs, field.Invalid(path, name, msg))
	}
	return errs
}

func validateTaint(t corev1.Taint, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateName(t.Key, path.Child("key"), "a taint needs a key", validation.IsQualifiedName)...)
	for _, msg := range validation.IsValidLabelValue(t.Value) {
		errs = append(errs, field.Invalid(path.Child("value"), t.Value, msg))
	}
	if !sets.New(taintEffects...).Has(t.Effect) {
		errs = append(errs, field.NotSupported(path.Child("effect"), t.Effect, taintEffects))
	}
	return errs
}

// ValidateSysctlPattern checks one allowedUnsafeSysctls entry by the rules a config
// pool's entries are checked by; discovery checks the allowlists it reads from kubelets
// and Nodes with it.
func ValidateSysctlPattern(pattern string) error {
	return validateSysctlPattern(pattern, field.NewPath("allowedUnsafeSysctls")).ToAggregate()
}

// validateSysctlPattern applies the kubelet's own rules for allowedUnsafeSysctls
// (pkg/kubelet/sysctl NewAllowlist): the kubelet refuses to start with a pattern whose
// namespace is unknown, so such a pool can never exist.
func validateSysctlPattern(s string, path *field.Path) field.ErrorList {
	switch {
	case s == "":
		return field.ErrorList{field.Required(path, "write a sysctl name or a prefix ending in '*'")}
	case len(s) > sysctlMaxLength:
		return field.ErrorList{field.TooLong(path, s, sysctlMaxLength)}
	case strings.Contains(strings.TrimSuffix(s, "*"), "*"):
		return field.ErrorList{field.Invalid(path, s, "'*' is only allowed at the end, as in kernel.shm*")}
	case !sysctlPatternRE.MatchString(s):
		return field.ErrorList{field.Invalid(path, s, "must be lowercase sysctl segments separated by '.' or '/', optionally ending in '*'")}
	}
	ns, _, prefixed := sysctl.GetNamespace(s)
	if ns == sysctl.UnknownNamespace {
		if prefixed && strings.HasSuffix(s, "*") {
			return field.ErrorList{field.Invalid(path, s, "matches no namespaced sysctl; no kubelet can allow it")}
		}
		return field.ErrorList{field.Invalid(path, s, "not a namespaced sysctl; no kubelet can allow it")}
	}
	return nil
}

func (p Policy) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i := range HostNamespaces {
		h := &HostNamespaces[i]
		if mode := *h.Mode(&p); !mode.Valid() {
			errs = append(errs, field.NotSupported(path.Child(h.Field), mode, ClashModes))
		}
	}
	if !p.Unplaceable.Valid() {
		errs = append(errs, field.NotSupported(path.Child("unplaceable"), p.Unplaceable, UnplaceablePolicies))
	}
	return errs
}

func (d *Discovery) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateName(d.PoolLabel, path.Child("poolLabel"), "name the node label that groups nodes into pools, e.g. cloud.google.com/gke-nodepool", validation.IsQualifiedName)...)
	if !slices.Contains(allowlistSources, d.AllowlistFrom) {
		errs = append(errs, field.NotSupported(path.Child("allowlistFrom"), d.AllowlistFrom, allowlistSources))
	}
	if d.OnlyListedPools && len(d.Pools) == 0 {
		errs = append(errs, field.Required(path.Child("pools"), "onlyListedPools uses only the discovered pools listed here: list at least one, or unset onlyListedPools"))
	}
	names := make(map[string]bool, len(d.Pools))
	for i := range d.Pools {
		pp := path.Child("pools").Index(i)
		errs = append(errs, d.Pools[i].validate(pp)...)
		if names[d.Pools[i].Name] {
			errs = append(errs, field.Duplicate(pp.Child("name"), d.Pools[i].Name))
		}
		names[d.Pools[i].Name] = true
	}
	return errs
}

// poolPatternChars are path.Match's special characters: a name holding none is an
// exact pool name.
const poolPatternChars = `*?[\`

func (p *DiscoveredPool) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case p.Name == "":
		errs = append(errs, field.Required(path.Child("name"), "name a discovered pool (its pool label value) or a pattern such as gpu-*"))
	case strings.ContainsAny(p.Name, poolPatternChars):
		if _, err := pathpkg.Match(p.Name, ""); err != nil {
			errs = append(errs, field.Invalid(path.Child("name"), p.Name, "not a valid pattern (path.Match syntax, as in gpu-*)"))
		}
	default:
		errs = append(errs, validateName(p.Name, path.Child("name"), "", validation.IsDNS1123Subdomain)...)
	}
	if p.NamespaceSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(p.NamespaceSelector, metav1validation.LabelSelectorValidationOptions{}, path.Child("namespaceSelector"))...)
	}
	return errs
}

// PoolRestriction returns the first entry of d.Pools whose name or pattern matches the
// discovered pool name, and whether there is one. Discovery applies it to the pool
// (and, with OnlyListedPools, leaves a pool without one unused).
func (d *Discovery) PoolRestriction(name string) (DiscoveredPool, bool) {
	if d == nil {
		return DiscoveredPool{}, false
	}
	for _, p := range d.Pools {
		if ok, _ := pathpkg.Match(p.Name, name); ok {
			return p, true
		}
	}
	return DiscoveredPool{}, false
}

// DeepCopy returns a copy that shares no memory with c, so Compile can default and keep
// a config without the caller's later edits leaking into a running webhook.
func (c *PlacementConfig) DeepCopy() *PlacementConfig {
	if c == nil {
		return nil
	}
	out := *c
	out.Pools = copyPools(c.Pools)
	if c.Discovery != nil {
		d := *c.Discovery
		if d.Pools != nil {
			d.Pools = make([]DiscoveredPool, len(c.Discovery.Pools))
			for i, p := range c.Discovery.Pools {
				d.Pools[i] = DiscoveredPool{Name: p.Name, NamespaceSelector: p.NamespaceSelector.DeepCopy()}
			}
		}
		out.Discovery = &d
	}
	return &out
}

func copyPools(pools []Pool) []Pool {
	if pools == nil {
		return nil
	}
	out := make([]Pool, len(pools))
	for i, p := range pools {
		out[i] = p
		if p.NodeSelector != nil {
			out[i].NodeSelector = make(map[string]string, len(p.NodeSelector))
			for k, v := range p.NodeSelector {
				out[i].NodeSelector[k] = v
			}
		}
		if p.Taints != nil {
			out[i].Taints = make([]corev1.Taint, len(p.Taints))
			for j := range p.Taints {
				p.Taints[j].DeepCopyInto(&out[i].Taints[j])
			}
		}
		if p.AllowedUnsafeSysctls != nil {
			out[i].AllowedUnsafeSysctls = append([]string(nil), p.AllowedUnsafeSysctls...)
		}
		out[i].NamespaceSelector = p.NamespaceSelector.DeepCopy()
	}
	return out
}
