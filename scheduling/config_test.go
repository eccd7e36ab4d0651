package scheduling

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConfig(t *testing.T) {
	t.Run("Validate reports every problem with its path", func(t *testing.T) {
		tests := map[string]struct {
			yaml string
			// want lists every error as produced by field.Error.Error(), sorted.
			want []string
		}{
			"a valid config has no errors": {
				yaml: `
apiVersion: sysctl-placement.io/v1alpha1
kind: PlacementConfig
pools:
  - name: a
    nodeSelector: {pool: a}
    allowedUnsafeSysctls: ["kernel.shm*", "net/core/somaxconn", "fs.mqueue.*", "user.*"]
    kubeletVersion: v1.30.1-eks-abc
    kernelVersion: 6.8.0-1019-gke
`,
			},
			"a non-namespaced sysctl is named with its path": {
				yaml: `
pools:
  - {name: a, nodeSelector: {pool: a}}
  - {name: b, nodeSelector: {pool: b}}
  - {name: c, nodeSelector: {pool: c}, allowedUnsafeSysctls: ["kernel.panic"]}
`,
				want: []string{`pools[2].allowedUnsafeSysctls[0]: Invalid value: "kernel.panic": not a namespaced sysctl; no kubelet can allow it`},
			},
			"patterns with a star inside or matching nothing namespaced are errors": {
				yaml: `
pools:
  - name: a
    nodeSelector: {pool: a}
    allowedUnsafeSysctls: ["kernel.*.x", "vm.*", "*", "net*", "", "Kernel.Sem"]
`,
				want: []string{
					`pools[0].allowedUnsafeSysctls[0]: Invalid value: "kernel.*.x": '*' is only allowed at the end, as in kernel.shm*`,
					`pools[0].allowedUnsafeSysctls[1]: Invalid value: "vm.*": matches no namespaced sysctl; no kubelet can allow it`,
					`pools[0].allowedUnsafeSysctls[2]: Invalid value: "*": matches no namespaced sysctl; no kubelet can allow it`,
					`pools[0].allowedUnsafeSysctls[3]: Invalid value: "net*": matches no namespaced sysctl; no kubelet can allow it`,
					`pools[0].allowedUnsafeSysctls[4]: Required value: write a sysctl name or a prefix ending in '*'`,
					`pools[0].allowedUnsafeSysctls[5]: Invalid value: "Kernel.Sem": must be lowercase sysctl segments separated by '.' or '/', optionally ending in '*'`,
				},
			},
			"pool names, selectors, taints and versions are checked": {
				yaml: `
pools:
  - name: ""
    nodeSelector: {}
  - name: dup
    nodeSelector: {"bad key!": x}
    taints: [{key: "", effect: Sometimes}, {key: ok, value: "bad value!", effect: NoSchedule}]
    kubeletVersion: latest
    kernelVersion: "6.8abc"
  - name: dup
    nodeSelector: {pool: "x y"}
    namespaceSelector: {matchExpressions: [{key: team, operator: Near}]}
`,
				want: []string{
					`pools[0].name: Required value: name the pool; namespaces list pools by name`,
					`pools[0].nodeSelector: Required value: give at least one node label; an empty selector would match every node`,
					`pools[1].kernelVersion: Invalid value: "6.8abc": "6.8abc" is not a version: only a -suffix or +suffix may follow major.minor[.patch]`,
					`pools[1].kubeletVersion: Invalid value: "latest": "latest" is not a version: write it as major.minor[.patch], e.g. 1.37.2`,
					`pools[1].nodeSelector: Invalid value: "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
					`pools[1].taints[0].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"`,
					`pools[1].taints[0].key: Required value: a taint needs a key`,
					`pools[1].taints[1].value: Invalid value: "bad value!": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
					`pools[2].name: Duplicate value: "dup"`,
					`pools[2].namespaceSelector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator`,
					`pools[2].nodeSelector: Invalid value: "x y": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
				},
			},
			"two pools with the same selector are ambiguous": {
				yaml: `
pools:
  - {name: a, nodeSelector: {pool: a}}
  - {name: b, nodeSelector: {pool: a}}
`,
				want: []string{`pools[1].nodeSelector: Invalid value: "pool=a": pool a has the same selector; merge the two pools or tell their nodes apart with another label`},
			},
			"policy modes and discovery are checked": {
				yaml: `
policy: {hostIPC: remove, hostNetwork: strip, hostUsers: drop, unplaceable: allow}
discovery: {poolLabel: "not a label", allowlistFrom: ssh}
`,
				want: []string{
					`discovery.allowlistFrom: Unsupported value: "ssh": supported values: "configz", "annotation"`,
					`discovery.poolLabel: Invalid value: "not a label": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
					`policy.hostIPC: Unsupported value: "remove": supported values: "strip", "drop-sysctls", "flag"`,
					`policy.hostUsers: Unsupported value: "drop": supported values: "strip", "drop-sysctls", "flag"`,
					`policy.unplaceable: Unsupported value: "allow": supported values: "deny", "warn"`,
				},
			},
			"discovered pool restrictions are checked": {
				yaml: `
discovery:
  poolLabel: cloud.google.com/gke-nodepool
  pools:
    - {name: ipc, namespaceSelector: {matchLabels: {team: db}}}
    - {name: ipc}
    - {name: "gpu-[", namespaceSelector: {matchExpressions: [{key: team, operator: Near}]}}
    - {name: "Not_A_Pool"}
    - {name: ""}
    - {name: "gpu-*", namespaceSelector: {matchLabels: {team: ml}}}
`,
				want: []string{
					`discovery.pools[1].name: Duplicate value: "ipc"`,
					`discovery.pools[2].name: Invalid value: "gpu-[": not a valid pattern (path.Match syntax, as in gpu-*)`,
					`discovery.pools[2].namespaceSelector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator`,
					`discovery.pools[3].name: Invalid value: "Not_A_Pool": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
					`discovery.pools[4].name: Required value: name a discovered pool (its pool label value) or a pattern such as gpu-*`,
				},
			},
			"only listed discovered pools need a list": {
				yaml: `discovery: {poolLabel: cloud.google.com/gke-nodepool, onlyListedPools: true}`,
				want: []string{`discovery.pools: Required value: onlyListedPools uses only the discovered pools listed here: list at least one, or unset onlyListedPools`},
			},
			"zero pools need discovery": {
				yaml: `policy: {}`,
				want: []string{`pools: Required value: list at least one pool, or set discovery to read pools from nodes`},
			},
			"zero pools with discovery are valid": {
				yaml: `discovery: {poolLabel: cloud.google.com/gke-nodepool}`,
			},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				data := tc.yaml
				if !strings.Contains(data, "apiVersion") {
					data = "apiVersion: sysctl-placement.io/v1alpha1\nkind: PlacementConfig\n" + data
				}
				cfg, err := ParseConfig([]byte(data))
				if err != nil {
					t.Fatal(err)
				}
				cfg.Default()
				var got []string
				for _, e := range cfg.Validate() {
					got = append(got, e.Error())
				}
				sort.Strings(got)
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
				}
				_, err = Compile(cfg)
				if (err == nil) != (len(tc.want) == 0) {
					t.Errorf("Compile error = %v, want error: %v", err, len(tc.want) > 0)
				}
				if err != nil {
					for _, w := range tc.want {
						path, _, _ := strings.Cut(w, ":")
						if !strings.Contains(err.Error(), path) {
							t.Errorf("Compile error does not name %s: %v", path, err)
						}
					}
				}
			})
		}
	})

	t.Run("ParseConfig is strict", func(t *testing.T) {
		tests := map[string]struct {
			data string
			want string
		}{
			"an unknown field is an error": {
				data: "apiVersion: sysctl-placement.io/v1alpha1\nkind: PlacementConfig\npools: [{name: a, nodeSelector: {a: b}, allowedUnsafeSysctl: [x]}]\n",
				want: `unknown field "allowedUnsafeSysctl"`,
			},
			"a wrong apiVersion is an error": {
				data: "apiVersion: v1\nkind: PlacementConfig\n",
				want: `apiVersion: Unsupported value: "v1": supported values: "sysctl-placement.io/v1alpha1"`,
			},
			"a missing kind is an error": {
				data: `{"apiVersion": "sysctl-placement.io/v1alpha1"}`,
				want: `kind: Unsupported value: ""`,
			},
			"JSON is accepted": {
				data: `{"apiVersion": "sysctl-placement.io/v1alpha1", "kind": "PlacementConfig", "pools": [{"name": "a", "nodeSelector": {"a": "b"}}]}`,
			},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				_, err := ParseConfig([]byte(tc.data))
				if tc.want == "" {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v does not contain %q", err, tc.want)
				}
			})
		}
	})

	t.Run("a discovered pool takes the first restriction its name matches", func(t *testing.T) {
		d := &Discovery{Pools: []DiscoveredPool{
			{Name: "gpu-a100", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "research"}}},
			{Name: "gpu-*", NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "ml"}}},
		}}
		for name, want := range map[string]string{"gpu-a100": "research", "gpu-t4": "ml", "general": ""} {
			r, ok := d.PoolRestriction(name)
			if got := r.NamespaceSelector.String(); ok != (want != "") || (ok && r.NamespaceSelector.MatchLabels["team"] != want) {
				t.Errorf("PoolRestriction(%s) = %s, %v; want team=%s", name, got, ok, want)
			}
		}
	})

	t.Run("Default fills the policy", func(t *testing.T) {
		var c PlacementConfig
		c.Default()
		want := Policy{HostIPC: ClashStrip, HostNetwork: ClashFlag, HostUsers: ClashFlag, Unplaceable: UnplaceableDeny}
		if c.Policy != want {
			t.Fatalf("got %+v, want %+v", c.Policy, want)
		}
	})

	t.Run("Compile does not modify its input", func(t *testing.T) {
		cfg := &PlacementConfig{Pools: []Pool{{Name: "a", NodeSelector: map[string]string{"a": "b"}}}}
		c, err := Compile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Policy != (Policy{}) {
			t.Errorf("Compile defaulted the caller's config")
		}
		cfg.Pools[0].NodeSelector["a"] = "changed"
		if c.Pools()[0].NodeSelector["a"] != "b" {
			t.Errorf("Compiled shares memory with the caller's config")
		}
		if c.Policy().HostIPC != ClashStrip || c.Config().Policy.Unplaceable != UnplaceableDeny {
			t.Errorf("Compiled is not defaulted: %+v", c.Policy())
		}
	})

	t.Run("the safe sysctls follow the kubelet and the kernel", func(t *testing.T) {
		tests := map[string]struct {
			kubelet, kernel string
			want            int
			has, hasNot     string
		}{
			"empty versions are the newest kubelet on a modern kernel": {want: 14, has: "net.ipv4.tcp_notsent_lowat"},
			"kubelet 1.36 lacks the 1.37 entries":                      {kubelet: "v1.36.4", want: 12, hasNot: "net.ipv4.tcp_slow_start_after_idle"},
			"kubelet 1.28 has the 1.27 set":                            {kubelet: "1.28.5-gke.1200", want: 6, has: "net.ipv4.ip_local_reserved_ports"},
			"kubelet 1.26 has the original five":                       {kubelet: "1.26.0", want: 5},
			"kernel 4.14 lacks the 4.15 entries":                       {kernel: "4.14.0-1019-aws", want: 11, hasNot: "net.ipv4.tcp_rmem"},
			"kernel 3.10 keeps only the kernel-independent entries":    {kernel: "3.10.0-1160.el7.x86_64", want: 5},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				got, err := SafeSysctls(tc.kubelet, tc.kernel)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != tc.want {
					t.Errorf("got %d entries %q, want %d", len(got), got, tc.want)
				}
				if tc.has != "" && !slices.Contains(got, tc.has) {
					t.Errorf("missing %s", tc.has)
				}
				if tc.hasNot != "" && slices.Contains(got, tc.hasNot) {
					t.Errorf("unexpected %s", tc.hasNot)
				}
			})
		}
		if _, err := SafeSysctls("2.0.0", ""); err == nil {
			t.Errorf("kubelet 2.0.0 accepted")
		}
	})
}
