package perf

import (
	"strings"
	"testing"
	"time"
)

func TestLoadOptions(t *testing.T) {
	valid := func() LoadOptions {
		return LoadOptions{Duration: 10 * time.Second, Warmup: time.Second, Repeat: 3, Rate: 1000,
			Scenarios: "closed-8,closed-32,open,closed-32-h2", Namespaces: 5000}
	}
	t.Run("the four scenarios run for the duration, the open one at the rate", func(t *testing.T) {
		o := valid()
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		list, err := o.scenarioList()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range list {
			names = append(names, s.Name)
			if s.Duration != o.Duration || s.Warmup != o.Warmup {
				t.Errorf("%s: duration %s warm-up %s, want %s and %s", s.Name, s.Duration, s.Warmup, o.Duration, o.Warmup)
			}
			if s.Mode == Open && (s.Rate != 1000 || s.MaxRequests != 11000) {
				t.Errorf("%s: rate %d, at most %d requests; want 1000 and 11000 (rate × (duration+1s))", s.Name, s.Rate, s.MaxRequests)
			}
		}
		if got := strings.Join(names, ","); got != "closed-8,closed-32,open-1000,closed-32-h2" {
			t.Errorf("scenarios %s, want closed-8,closed-32,open-1000,closed-32-h2", got)
		}
	})
	for _, c := range []struct {
		name   string
		change func(*LoadOptions)
		want   string
	}{
		{"an unknown scenario is refused with the choices", func(o *LoadOptions) { o.Scenarios = "closed-8,burst" }, `unknown scenario "burst"; choose from closed-8, closed-32, open, closed-32-h2`},
		{"a repeat outside 1 to 20 is refused", func(o *LoadOptions) { o.Repeat = 0 }, "-repeat must be between 1 and 20, got 0"},
		{"a duration over two minutes is refused", func(o *LoadOptions) { o.Duration = 3 * time.Minute }, "-duration must be positive and at most 2m, got 3m0s"},
		{"more than 20000 namespaces are refused", func(o *LoadOptions) { o.Namespaces = 20001 }, "-namespaces must be between 0 and 20000, got 20001"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := valid()
			c.change(&o)
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v, want an error saying %q", err, c.want)
			}
		})
	}
}
