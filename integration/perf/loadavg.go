package perf

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// LoadAverage is the machine's one-minute load average from /proc/loadavg: on a
// shared machine it tells how much else ran during a measurement.
func LoadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("/proc/loadavg is empty")
	}
	return strconv.ParseFloat(f[0], 64)
}
