package scheduling

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/component-helpers/node/util/sysctl"
)

// clashingSysctl is a sysctl of each kernel namespace in HostNamespaces.
var clashingSysctl = map[sysctl.Namespace]string{
	sysctl.IPCNamespace:  "kernel.shmmax",
	sysctl.NetNamespace:  "net.core.somaxconn",
	sysctl.UserNamespace: "user.max_user_namespaces",
}

func TestResolveClashes(t *testing.T) {
	cfg := loadTestConfig(t)
	// Every host namespace under every mode: a mode missing from the switch, or a
	// namespace missing here, fails.
	for _, h := range HostNamespaces {
		for _, mode := range ClashModes {
			t.Run(h.Field+" under "+string(mode)+" is resolved by that mode", func(t *testing.T) {
				name, ok := clashingSysctl[h.Sysctls]
				if !ok {
					t.Fatalf("no test sysctl for the %s namespace; add one to clashingSysctl", h.Kernel)
				}
				other := "kernel.sem" // a sysctl of another kernel namespace, which must not move
				if h.Sysctls == sysctl.IPCNamespace {
					other = "net.core.somaxconn"
				}
				pod := newPod(sysctls(name, other))
				if h.Sysctls != sysctl.UserNamespace {
					pod.Spec.HostUsers = boolPtr(false)
				}
				h.Set(&pod.Spec, true)
				p := newPlanner(cfg, enabledNS("team-a", nil, h.Annotation, string(mode)), pod)
				deny := p.resolveClashes(p.modes())
				rec := []HostNamespaceChange{{Field: h.Field, Mode: mode, Sysctls: []string{name}}}
				changed := *h.Change(&p.d.Changes)
				switch mode {
				case ClashStrip:
					if changed == nil || *changed || !reflect.DeepEqual(p.d.Audit.HostNamespaces, rec) {
						t.Errorf("want %s set to false and audited; changes %+v, audit %+v", h.Field, p.d.Changes, p.d.Audit)
					}
				case ClashDropSysctls:
					if !reflect.DeepEqual(p.d.Changes.DroppedSysctls, []string{name}) || !p.sysctls[0].dropped || p.sysctls[1].dropped {
						t.Errorf("want only %s dropped; changes %+v", name, p.d.Changes)
					}
					if p.remaining() != 1 {
						t.Errorf("remaining = %d, want 1", p.remaining())
					}
				case ClashFlag:
					if changed != nil || !reflect.DeepEqual(p.d.Audit.Flagged, rec) {
						t.Errorf("want nothing changed and the clash flagged; changes %+v, audit %+v", p.d.Changes, p.d.Audit)
					}
				default:
					t.Fatalf("clash mode %q has no expectation here; add one", mode)
				}
				// Only a flagged User clash is denied: the runtime refuses it on the node.
				wantDeny := mode == ClashFlag && h.Sysctls == sysctl.UserNamespace
				if deny != wantDeny || p.d.Allowed == wantDeny {
					t.Errorf("deny = %v, allowed = %v; want deny %v", deny, p.d.Allowed, wantDeny)
				}
				if len(p.d.Warnings) != 1 || !strings.Contains(p.d.Warnings[0], name) {
					t.Errorf("warnings %q; want one naming %s", p.d.Warnings, name)
				}
			})
		}
	}

	tests := []struct {
		name    string
		pod     *corev1.Pod
		ns      Namespace
		deny    bool
		changes Changes
		message string
	}{
		{
			name: "a sysctl of another kernel namespace does not clash",
			pod:  newPod(sysctls("net.core.somaxconn"), hostIPC, hostUsers(false)),
			ns:   enabledNS("team-a", nil),
		},
		{
			name: "a pod not sharing the host namespace does not clash",
			pod:  newPod(sysctls("kernel.shmmax"), hostUsers(false)),
			ns:   enabledNS("team-a", nil),
		},
		{
			name:    "stripping hostUsers next to a kept hostNetwork is denied instead",
			pod:     newPod(sysctls("user.max_user_namespaces", "net.core.somaxconn"), hostNetwork),
			ns:      enabledNS("team-a", nil, AnnotationHostUsers, "strip"),
			deny:    true,
			message: "hostUsers: false is not allowed together with hostNetwork, hostIPC or hostPID",
		},
		{
			name:    "stripping hostUsers next to a stripped hostIPC is allowed",
			pod:     newPod(sysctls("user.max_user_namespaces", "kernel.shmmax"), hostIPC),
			ns:      enabledNS("team-a", nil, AnnotationHostUsers, "strip"),
			changes: Changes{HostIPC: boolPtr(false), HostUsers: boolPtr(false)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlanner(cfg, tc.ns, tc.pod)
			if deny := p.resolveClashes(p.modes()); deny != tc.deny {
				t.Errorf("deny = %v, want %v", deny, tc.deny)
			}
			if !reflect.DeepEqual(p.d.Changes, tc.changes) {
				t.Errorf("changes = %+v, want %+v", p.d.Changes, tc.changes)
			}
			if !strings.Contains(p.d.Message, tc.message) {
				t.Errorf("message %q does not say %q", p.d.Message, tc.message)
			}
		})
	}
}

func TestModes(t *testing.T) {
	cfg := loadTestConfig(t)
	t.Run("the policy applies where the namespace says nothing", func(t *testing.T) {
		m := newPlanner(cfg, enabledNS("team-a", nil), newPod()).modes()
		if m.clash != [len(HostNamespaces)]ClashMode{ClashStrip, ClashFlag, ClashFlag} || m.unplaceable != UnplaceableDeny {
			t.Errorf("modes = %+v", m)
		}
	})
	t.Run("namespace annotations override the policy", func(t *testing.T) {
		ns := enabledNS("team-a", nil, AnnotationHostIPC, "flag", AnnotationHostNetwork, "drop-sysctls", AnnotationUnplaceable, "warn")
		m := newPlanner(cfg, ns, newPod()).modes()
		if m.clash != [len(HostNamespaces)]ClashMode{ClashFlag, ClashDropSysctls, ClashFlag} || m.unplaceable != UnplaceableWarn {
			t.Errorf("modes = %+v", m)
		}
	})
	t.Run("an unknown mode keeps the policy and warns with the modes to use", func(t *testing.T) {
		p := newPlanner(cfg, enabledNS("team-a", nil, AnnotationHostIPC, "remove"), newPod())
		if m := p.modes(); m.clash[0] != ClashStrip {
			t.Errorf("hostIPC mode = %q, want the policy's strip", m.clash[0])
		}
		if len(p.d.Warnings) != 1 || !strings.HasSuffix(p.d.Warnings[0], "is invalid; use strip, drop-sysctls or flag") {
			t.Errorf("warnings = %q", p.d.Warnings)
		}
	})
}
