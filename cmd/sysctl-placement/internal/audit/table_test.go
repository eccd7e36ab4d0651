package audit

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAuditTable(t *testing.T) {
	var out bytes.Buffer
	if err := Write(&out, "table", build(auditFixture(t))); err != nil {
		t.Fatal(err)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`team-b\s+Deployment/postgres\s+kernel.shmmax,kernel.sem\s+no\s+0/2/2\s+general-0\s+3 SysctlForbidden`),
	} {
		if !want.MatchString(out.String()) {
			t.Errorf("the table lacks %s:\n%s", want, out.String())
		}
	}
	for _, want := range []string{
		"would be placed on pool ipc",
		"would be denied: no pool allows kernel.msgmax+net.core.somaxconn",
		"opt namespace team-b in → 1 workload(s) placeable (1 broken today), 1 would be denied because no pool allows kernel.msgmax+net.core.somaxconn",
		"pod bare on node general-0",
		"4 workload(s) with sysctls: 2 broken, 1 unplaceable, 1 placed, 2 not opted in",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestAuditJSON(t *testing.T) {
	var out bytes.Buffer
	if err := Write(&out, "json", build(auditFixture(t))); err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Workloads) != 4 || r.Totals.Broken != 2 || len(r.Pools) != 3 {
		t.Errorf("json report = %+v", r)
	}
}

func TestAuditShowsPoolsRestrictedToNamespaces(t *testing.T) {
	in := auditFixture(t)
	for i := range in.pools {
		if in.pools[i].Pool.Name == "ipc" {
			in.pools[i].Pool.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "db"}}
		}
	}
	var out bytes.Buffer
	if err := Write(&out, "table", build(in)); err != nil {
		t.Fatal(err)
	}
	if want := "Pools restricted to namespaces:\n  pool ipc: only namespaces team=db\n"; !strings.Contains(out.String(), want) {
		t.Errorf("the table lacks %q:\n%s", want, out.String())
	}
}
