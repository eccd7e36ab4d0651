package perf

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HistogramTotals adds up the _sum and _count of every series of the histogram name
// in a Prometheus text exposition.
func HistogramTotals(text, name string) (sum, count float64) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var target *float64
		switch {
		case strings.HasPrefix(line, name+"_sum"):
			target, line = &sum, line[len(name+"_sum"):]
		case strings.HasPrefix(line, name+"_count"):
			target, line = &count, line[len(name+"_count"):]
		default:
			continue
		}
		if line == "" || (line[0] != '{' && line[0] != ' ') {
			continue // another metric with this prefix
		}
		fields := strings.Fields(line[strings.LastIndexByte(line, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			*target += v
		}
	}
	return sum, count
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
