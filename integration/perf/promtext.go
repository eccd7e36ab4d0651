package perf

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// HistogramTotals adds up the _sum and _count of every series of the histogram name
// in a Prometheus text exposition.
func HistogramTotals(text, name string) (sum, count float64) {
	h := ReadHistogram(text, name, nil)
	return h.Sum, h.Count
}

// MetricSum adds up every sample of the metric name (every label set) in a Prometheus
// text exposition.
func MetricSum(text, name string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || line == "" || (line[0] != '{' && line[0] != ' ') {
			continue // another metric with this prefix
		}
		fields := strings.Fields(line[strings.LastIndexByte(line, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// FindProcess returns the pid of a process whose command line contains every one of
// parts, or 0.
func FindProcess(parts ...string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		all := true
		for _, p := range parts {
			if !strings.Contains(cmdline, p) {
				all = false
				break
			}
		}
		if all {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	return 0
}

// Histogram is a Prometheus histogram summed over the series a filter selected:
// cumulative bucket counts by finite upper bound (ascending; the +Inf bucket is
// Count), sum and count.
type Histogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []float64 `json:"counts"`
	Sum    float64   `json:"sum"`
	Count  float64   `json:"count"`
}

// ReadHistogram sums the series of the histogram name in a Prometheus text
// exposition whose labels include every label=value of match.
func ReadHistogram(text, name string, match map[string]string) Histogram {
	byBound := map[float64]float64{}
	var h Histogram
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		end := strings.IndexAny(line, "{ ")
		if end < 0 || !strings.HasPrefix(line[:end], name+"_") {
			continue
		}
		suffix, labels, value := line[:end], "", line[end:]
		if line[end] == '{' {
			var ok bool
			if labels, value, ok = strings.Cut(line[end+1:], "} "); !ok {
				continue
			}
		}
		if !labelsMatch(labels, match) || len(strings.Fields(value)) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			continue
		}
		switch suffix[len(name)+1:] {
		case "bucket":
			// The +Inf bucket is Count; leaving it out keeps the histogram JSON.
			if bound, err := strconv.ParseFloat(labelValue(labels, "le"), 64); err == nil && !math.IsInf(bound, 1) {
				byBound[bound] += v
			}
		case "sum":
			h.Sum += v
		case "count":
			h.Count += v
		}
	}
	for b := range byBound {
		h.Bounds = append(h.Bounds, b)
	}
	sort.Float64s(h.Bounds)
	for _, b := range h.Bounds {
		h.Counts = append(h.Counts, byBound[b])
	}
	return h
}

// labelsMatch reports whether the label list (a="x",b="y") has every pair of match.
func labelsMatch(labels string, match map[string]string) bool {
	for k, v := range match {
		if labelValue(labels, k) != v {
			return false
		}
	}
	return true
}

// labelValue returns the value of label k in a label list, or "".
func labelValue(labels, k string) string {
	for _, pair := range strings.Split(labels, `",`) {
		name, value, ok := strings.Cut(pair, `="`)
		if ok && strings.TrimSpace(name) == k {
			return strings.TrimSuffix(value, `"`)
		}
	}
	return ""
}

// Since returns what h counted after before (the same histogram read earlier).
func (h Histogram) Since(before Histogram) Histogram {
	d := Histogram{Bounds: h.Bounds, Counts: make([]float64, len(h.Counts)), Sum: h.Sum - before.Sum, Count: h.Count - before.Count}
	for i, b := range h.Bounds {
		d.Counts[i] = h.Counts[i]
		for j, bb := range before.Bounds {
			if bb == b {
				d.Counts[i] -= before.Counts[j]
			}
		}
	}
	return d
}

// Mean is Sum / Count, or 0 with no observations.
func (h Histogram) Mean() float64 {
	if h.Count <= 0 {
		return 0
	}
	return h.Sum / h.Count
}

// Quantile estimates the q-quantile as Prometheus's histogram_quantile does: linear
// interpolation inside the bucket that holds it (from 0 for the first bucket), the
// highest finite bound when it falls in +Inf. 0 with no observations.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count <= 0 {
		return 0
	}
	rank := q * h.Count
	lower, below := 0.0, 0.0
	for i, b := range h.Bounds {
		if h.Counts[i] >= rank {
			inBucket := h.Counts[i] - below
			if inBucket <= 0 {
				return b
			}
			return lower + (b-lower)*(rank-below)/inBucket
		}
		lower, below = b, h.Counts[i]
	}
	return lower
}
