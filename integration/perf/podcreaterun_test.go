package perf

import (
	"strings"
	"testing"
	"time"
)

func TestPodCreateOptions(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(*PodCreateOptions)
		want   string // "" for valid
	}{
		{"the defaults of perf/cmd/podcreate are valid", func(*PodCreateOptions) {}, ""},
		{"a rate over 500 pods per second is refused", func(o *PodCreateOptions) { o.Rates = []float64{10, 600} }, "-rates: 600 is not a rate between 0 and 500 pods/s"},
		{"an unknown arm is refused with the choices", func(o *PodCreateOptions) { o.Arms = []string{ArmNone, "sidecar"} }, `-arms: "sidecar" is not one of none, webhook, policy`},
		{"no arm at all is refused", func(o *PodCreateOptions) { o.Arms = nil }, "want at least one rate (-rates) and one arm (-arms)"},
		{"a duration under a second is refused", func(o *PodCreateOptions) { o.Duration = time.Millisecond }, "want 1s ≤ -duration ≤ 10m and 1 ≤ -repeat ≤ 10"},
		{"more than ten repeats are refused", func(o *PodCreateOptions) { o.Repeat = 11 }, "want 1s ≤ -duration ≤ 10m and 1 ≤ -repeat ≤ 10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := PodCreateOptions{Rates: []float64{10, 25, 50}, Duration: time.Minute, Arms: []string{ArmNone, ArmWebhook, ArmPolicy}, Repeat: 1}
			c.change(&o)
			err := o.Validate()
			if c.want == "" && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
				t.Errorf("Validate() = %v, want an error saying %q", err, c.want)
			}
		})
	}
}
