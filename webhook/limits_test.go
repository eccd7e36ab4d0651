package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/sysctl-placement/sysctl-placement/scheduling"
)

// maxAnswerBytes is what issue 23 allows an answer to a hostile pod: the API server
// passes a denial back to the client whole.
const maxAnswerBytes = 64 << 10

func TestHostilePodsGetASmallDenialNamingTheLimit(t *testing.T) {
	env := newTestEnv(t, nil)
	tests := []struct {
		name string
		pod  string
		want string
	}{
		{"55,000 made-up sysctls", podWithSysctls(t, acceptLocal(55_000)), "at most " + strconv.Itoa(scheduling.MaxSysctls) + " per pod"},
		{"a 10,000-character sysctl name", podWithSysctls(t, []string{"net.ipv4.conf." + strings.Repeat("x", 10_000) + ".accept_local"}),
			"at most " + strconv.Itoa(scheduling.MaxSysctlNameLength)},
	}
	for _, tc := range tests {
		for _, hook := range []struct {
			path string
			h    http.Handler
		}{{"/mutate", env.mutate}, {"/validate", env.validate}} {
			t.Run(tc.name+": denied by "+hook.path+" with the limit", func(t *testing.T) {
				rec := post(hook.h, reviewJSON(t, tc.pod, reviewOptions{}))
				if rec.Body.Len() > maxAnswerBytes {
					t.Fatalf("answer of %d bytes; want at most %d", rec.Body.Len(), maxAnswerBytes)
				}
				resp := response(t, rec)
				if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, tc.want) {
					t.Fatalf("allowed %v, result %+v; want a denial saying %q", resp.Allowed, resp.Result, tc.want)
				}
				if len(resp.Result.Message) > scheduling.MaxMessageLength {
					t.Errorf("message of %d bytes; want at most %d", len(resp.Result.Message), scheduling.MaxMessageLength)
				}
			})
		}
	}
}

func TestLargestDenial(t *testing.T) {
	t.Run("an unplaceable pod with the most sysctls gets a small denial", func(t *testing.T) {
		env := newTestEnv(t, nil)
		var names []string
		for i := range scheduling.MaxSysctls {
			prefix := "net.ipv4.conf.if" + strconv.Itoa(i) + "."
			names = append(names, prefix+strings.Repeat("z", scheduling.MaxSysctlNameLength-len(prefix)))
		}
		rec := post(env.validate, reviewJSON(t, podWithSysctls(t, names), reviewOptions{}))
		resp := response(t, rec)
		if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "unplaceable sysctls: no node pool can run") {
			t.Fatalf("allowed %v, result %+v; want the unplaceable denial", resp.Allowed, resp.Result)
		}
		if len(resp.Result.Message) > scheduling.MaxMessageLength {
			t.Errorf("message of %d bytes; want at most %d", len(resp.Result.Message), scheduling.MaxMessageLength)
		}
	})
}
