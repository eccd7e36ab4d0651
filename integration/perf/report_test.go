package perf

import (
	"slices"
	"strings"
	"testing"
)

func TestParseBench(t *testing.T) {
	t.Run("each benchmark gathers its runs per package in first-seen order", func(t *testing.T) {
		out := `goos: linux
pkg: github.com/sysctl-placement/sysctl-placement/scheduling
BenchmarkPlan/pools=10-2   	  200000	      5200 ns/op	    2100 B/op	      31 allocs/op
BenchmarkPlan/pools=10-2   	  200000	      5300 ns/op	    2100 B/op	      31 allocs/op
pkg: github.com/sysctl-placement/sysctl-placement/webhook
BenchmarkMutateHandler-2   	   50000	     30100 ns/op	    9000 B/op	      70 allocs/op
PASS
`
		got, err := parseBench(strings.NewReader(out))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("got %d benchmarks, want 2", len(got))
		}
		plan, handler := got[0], got[1]
		if plan.name != "BenchmarkPlan/pools=10" || !strings.HasSuffix(plan.pkg, "/scheduling") ||
			!slices.Equal(plan.ns, []float64{5200, 5300}) || !slices.Equal(plan.allocs, []float64{31, 31}) {
			t.Errorf("first = %+v, want BenchmarkPlan/pools=10 of scheduling with two runs", *plan)
		}
		if handler.name != "BenchmarkMutateHandler" || !strings.HasSuffix(handler.pkg, "/webhook") || !slices.Equal(handler.bytes, []float64{9000}) {
			t.Errorf("second = %+v, want BenchmarkMutateHandler of webhook with one run", *handler)
		}
	})
	t.Run("output without benchmarks says how to produce them", func(t *testing.T) {
		_, err := parseBench(strings.NewReader("PASS\nok  \tgithub.com/x\t0.1s\n"))
		if err == nil || !strings.Contains(err.Error(), "-bench . -benchmem") {
			t.Errorf("parseBench = %v, want an error naming the go test flags", err)
		}
	})
}
