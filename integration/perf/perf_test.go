package perf

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

func TestPercentiles(t *testing.T) {
	tests := map[string]struct {
		samples []time.Duration
		want    Latencies
	}{
		"no samples give zeros": {nil, Latencies{}},
		"one sample is every percentile": {
			[]time.Duration{5}, Latencies{P50: 5, P90: 5, P99: 5, Max: 5},
		},
		"a hundred samples use the nearest rank": {
			seq(100), Latencies{P50: 50, P90: 90, P99: 99, Max: 100},
		},
		"a thousand shuffled samples are sorted first": {
			reverse(seq(1000)), Latencies{P50: 500, P90: 900, P99: 990, Max: 1000},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Percentiles(tt.samples); got != tt.want {
				t.Errorf("Percentiles = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func seq(n int) []time.Duration {
	s := make([]time.Duration, n)
	for i := range s {
		s[i] = time.Duration(i + 1)
	}
	return s
}

func reverse(s []time.Duration) []time.Duration {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
	return s
}

func TestSummarize(t *testing.T) {
	tests := map[string]struct {
		xs   []float64
		want Summary
	}{
		"nothing gives the zero summary":      {nil, Summary{}},
		"an odd count takes the middle value": {[]float64{3, 1, 2}, Summary{Min: 1, Median: 2, Max: 3, N: 3}},
		"an even count averages the middle":   {[]float64{4, 1, 3, 2}, Summary{Min: 1, Median: 2.5, Max: 4, N: 4}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Summarize(tt.xs); got != tt.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.xs, got, tt.want)
			}
		})
	}
}

func TestFloor(t *testing.T) {
	t.Run("answers every review with its UID and the fixed patch", func(t *testing.T) {
		reviews, err := CreateReviews("perf", 2)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(reviews[0].Body, reviews[1].Body) || reviews[0].UID == reviews[1].UID {
			t.Fatal("each review must have its own UID")
		}
		h := FloorHandler()
		for _, r := range reviews {
			req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(r.Body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			if out.Response == nil || out.Response.UID != r.UID || !out.Response.Allowed || !bytes.Equal(out.Response.Patch, FloorPatch) {
				t.Errorf("response %+v, want uid %s allowed with the fixed patch", out.Response, r.UID)
			}
			var ops []map[string]any
			if err := json.Unmarshal(out.Response.Patch, &ops); err != nil || len(ops) != 4 {
				t.Errorf("the fixed patch is not four JSON patch operations: %v", err)
			}
		}
	})
}

func TestLoaderRefusesNonLoopbackTargets(t *testing.T) {
	reviews, err := CreateReviews("perf", 1)
	if err != nil {
		t.Fatal(err)
	}
	s := Scenario{Name: "closed-8", Mode: Closed, Clients: 8, Duration: time.Second, MaxRequests: 10}
	for _, url := range []string{"https://10.0.0.1:8443/mutate", "https://example.com/mutate", "http://127.0.0.1:8443/mutate"} {
		if _, err := NewLoader(s, Target{Name: "x", URL: url}, reviews); err == nil {
			t.Errorf("NewLoader accepted %s; only https on 127.0.0.1 or ::1 may be loaded", url)
		}
	}
}

func TestScenarioValidateRejectsUnboundedRuns(t *testing.T) {
	ok := Scenario{Name: "s", Mode: Open, Clients: 64, Rate: 1000, Duration: time.Second, MaxRequests: 1000}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a bounded open loop is rejected: %v", err)
	}
	for name, mutate := range map[string]func(*Scenario){
		"no duration":      func(s *Scenario) { s.Duration = 0 },
		"no request limit": func(s *Scenario) { s.MaxRequests = 0 },
		"no rate":          func(s *Scenario) { s.Rate = 0 },
		"no clients":       func(s *Scenario) { s.Clients = 0 },
		"unknown mode":     func(s *Scenario) { s.Mode = "burst" },
	} {
		s := ok
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, s)
		}
	}
}

func TestHistogram(t *testing.T) {
	t.Run("HistogramTotals adds the _sum and _count of every series of the histogram", func(t *testing.T) {
		text := `# TYPE x histogram
x_bucket{le="1"} 3
x_sum{name="a"} 1.5
x_count{name="a"} 3
x_sum{name="b",other="}"} 0.5
x_count{name="b",other="}"} 1
x_sum_other 99
x_count 2
`
		sum, count := HistogramTotals(text, "x")
		if sum != 2 || count != 6 {
			t.Errorf("HistogramTotals = %v, %v; want 2, 6", sum, count)
		}
	})
	t.Run("ReadHistogram sums the selected series and estimates quantiles", func(t *testing.T) {
		text := `# HELP d x
d_bucket{name="a",le="0.005"} 90
d_bucket{name="a",le="0.025"} 99
d_bucket{name="a",le="+Inf"} 100
d_sum{name="a"} 0.5
d_count{name="a"} 100
d_bucket{name="b",le="0.005"} 1
d_bucket{name="b",le="0.025"} 1
d_bucket{name="b",le="+Inf"} 1
d_sum{name="b"} 0.001
d_count{name="b"} 1
dd_bucket{name="a",le="0.005"} 7
`
		a := ReadHistogram(text, "d", map[string]string{"name": "a"})
		if a.Count != 100 || a.Sum != 0.5 || len(a.Bounds) != 2 || a.Counts[1] != 99 {
			t.Fatalf("series a: %+v", a)
		}
		if got := a.Quantile(0.5); math.Abs(got-0.005*50/90) > 1e-9 {
			t.Errorf("p50 = %v, want interpolation inside the first bucket", got)
		}
		if got := a.Quantile(0.99); math.Abs(got-0.025) > 1e-9 {
			t.Errorf("p99 = %v, want the second bucket's bound", got)
		}
		if got := a.Quantile(1); got != 0.025 {
			t.Errorf("max = %v, want the highest finite bound when it falls in +Inf", got)
		}
		all := ReadHistogram(text, "d", nil)
		if all.Count != 101 || all.Counts[0] != 91 {
			t.Errorf("all series: %+v", all)
		}
		before := ReadHistogram(strings.ReplaceAll(text, "} 90", "} 40"), "d", map[string]string{"name": "a"})
		if d := a.Since(before); d.Counts[0] != 50 || d.Count != 0 {
			t.Errorf("since: %+v", d)
		}
		if (Histogram{}).Quantile(0.99) != 0 || (Histogram{}).Mean() != 0 {
			t.Error("an empty histogram must give zeros")
		}
		if _, err := json.Marshal(a); err != nil {
			t.Errorf("the histogram must encode as JSON (podcreate writes it): %v", err)
		}
	})
}
