package output

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// Changes renders what a decision adds, in the words of kubectl's fields.
func Changes(ch scheduling.Changes) string {
	var parts []string
	if len(ch.NodeSelector) > 0 {
		parts = append(parts, "nodeSelector "+labels.SelectorFromSet(ch.NodeSelector).String())
	}
	for _, term := range ch.AffinityTerms {
		var reqs []string
		for _, r := range term.MatchExpressions {
			reqs = append(reqs, fmt.Sprintf("%s %s (%s)", r.Key, strings.ToLower(string(r.Operator)), strings.Join(r.Values, ",")))
		}
		parts = append(parts, "affinity "+strings.Join(reqs, " and "))
	}
	for _, t := range ch.Tolerations {
		tol := t.Key
		if t.Value != "" {
			tol += "=" + t.Value
		}
		if t.Effect != "" {
			tol += ":" + string(t.Effect)
		}
		parts = append(parts, "toleration "+tol)
	}
	for _, f := range []struct {
		name string
		v    *bool
	}{{"hostIPC", ch.HostIPC}, {"hostNetwork", ch.HostNetwork}, {"hostUsers", ch.HostUsers}} {
		if f.v != nil {
			parts = append(parts, fmt.Sprintf("%s=%t", f.name, *f.v))
		}
	}
	if len(ch.DroppedSysctls) > 0 {
		parts = append(parts, "dropped "+strings.Join(ch.DroppedSysctls, ","))
	}
	return strings.Join(parts, ", ")
}
